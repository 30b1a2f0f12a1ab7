"""recipes/mathsmith.yaml against a real model over HTTP: yields per 100 attempts, reasons, kept problems.

    /work/shared/tools/real-model.sh start            # Qwen2.5-Coder-0.5B on llama.cpp (one choice per request)
    .venv/bin/python bench/mathsmith_real.py --base-url http://127.0.0.1:8011/v1 --attempts 12 --out /tmp/ms_real

Prints the funnel (attempts, problems parsed, agreed, kept; every drop by reason), the figures per 100 attempts,
and the kept problems with their concepts, answer, votes and difficulty. Rerunning with the same --out answers
every request from the request cache (it prints the requests sent: 0). Small token budgets by default: the
shared CPU server makes about 50 tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pyarrow.parquet as pq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-url", default="http://127.0.0.1:8011/v1")
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--attempts", type=int, default=4, help="seed rows used as triggers (one attempt each)")
    ap.add_argument("--samples", type=int, default=4, help="solver samples (the recipe's default is 6)")
    ap.add_argument("--min-agree", default="2", help="agreeing samples needed (the recipe's default is 3 of 6)")
    ap.add_argument("--max-tokens", type=int, default=200, help="per solver sample")
    ap.add_argument("--gen-max-tokens", type=int, default=350, help="per generated rationale + problem")
    ap.add_argument("--explanation-chars", type=int, default=200, help="each concept's explanation in the prompt")
    ap.add_argument("--batch-size", type=int, default=1, help="attempts per batch: each finished one is on disk")
    ap.add_argument("--out", type=Path, default=Path("/tmp/mathsmith_real"))
    ap.add_argument("--fresh", action="store_true", help="recompute the stage (the request cache is kept)")
    args = ap.parse_args()
    os.environ.update(MATHAUG_BACKEND="openai", MATHAUG_BASE_URL=args.base_url, MATHAUG_MODEL=args.model,
                      MATHAUG_SAMPLES=str(args.samples), MATHAUG_MIN_AGREE=args.min_agree,
                      MATHAUG_MAX_TOKENS=str(args.max_tokens), MATHAUG_GEN_MAX_TOKENS=str(args.gen_max_tokens),
                      MATHAUG_EXPLANATION_CHARS=str(args.explanation_chars), MATHAUG_MAX_RETRIES="30")

    from pipeline.build import run_build
    from pipeline.paths import RECIPES_DIR
    from pipeline.recipe import load_recipe

    recipe = load_recipe(RECIPES_DIR / "mathsmith.yaml")
    recipe.batch_size = args.batch_size
    result = run_build(recipe, args.out, limit=args.attempts, fresh=args.fresh)
    f = result.funnel
    counts = {k: f.get("mathsmith", k) for k in ("attempts", "problems", "agreed", "generated", "requests",
                                                   "cache_hits", "tokens_out")}
    reasons = f.reasons("mathsmith")
    attempts = counts["attempts"] or 1
    print(json.dumps({"counts": counts, "drop_reasons": reasons,
                      "malformed": {k: v for k, v in f.to_dict().get("mathsmith", {}).items()
                                    if k.startswith("malformed:")},
                      "kept_in_dataset": f.get("mathsmith", "kept")}, indent=1))
    print(f"per 100 attempts: problems parsed {100 * counts['problems'] / attempts:.0f}, parse failures "
          f"{100 * sum(v for k, v in reasons.items() if k.startswith(('generate_', 'problem_'))) / attempts:.0f}, "
          f"agreed {100 * counts['agreed'] / attempts:.0f} (agreement rate "
          f"{counts['agreed'] / max(counts['problems'], 1):.0%} of problems), kept {100 * counts['generated'] / attempts:.0f}")
    for path in sorted((args.out / "data").glob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            mp = json.loads(row["method_params"])
            print("\n--- KEPT", row["id"][:8], "| offered:", row["concepts"])
            print("claimed concepts:", mp["concepts_used"], "| features:", mp["features_used"])
            print("answer:", row["answer"], "| votes:", row["verification"]["votes"], "/", row["verification"]["samples"],
                  "| answers:", mp["answers"], "| difficulty:", row["difficulty"])
            print("PROBLEM:", row["question"][:1200])
            print("SOLUTION (kept):", (row["solution"] or "")[:600])


if __name__ == "__main__":
    main()
