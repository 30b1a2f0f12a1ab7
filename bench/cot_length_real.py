"""cot_length against a real model: mean tokens before and after per tier, share whose answer survived, pairs to read.

    /work/shared/tools/real-model.sh start      # Qwen2.5-Coder-0.5B on llama.cpp, http://127.0.0.1:8011/v1
    MATHAUG_BACKEND=openai MATHAUG_BASE_URL=http://127.0.0.1:8011/v1 MATHAUG_MODEL=qwen2.5-coder-0.5b-instruct \
      MATHAUG_MAX_TOKENS=600 .venv/bin/mathaug build recipes/cot_length.yaml -o /tmp/cot_real --limit 32 --direct
    .venv/bin/python bench/cot_length_real.py /tmp/cot_real [--show 2]

(The issue's run used a copy of the recipe whose seeds are 20 GSM8K train + 12 MATH train problems; tokens are
counted by the server's own tokenizer, llama.cpp's ``/extras/tokenize``.) Reads the build's output: every
``cot_length`` row in ``data/`` and ``dropped/`` — the stage's rejections (``dropped_by: stage:cot_length``, reason
= the first word of ``verification.detail``), the verified rewrites, and which solution the selection rule kept for
each question (the rewrite, or the reference it would replace).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq

NO_ANSWER = {"no_answer", "truncated", "request_error"}  # rejections of a rewrite that gave no answer


def rows(directory: Path) -> list[dict]:
    return [r for path in sorted(directory.glob("*.parquet")) for r in pq.read_table(path).to_pylist()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--show", type=int, default=0, help="before/after pairs to print")
    args = ap.parse_args()
    kept = rows(args.out / "data")
    dropped = rows(args.out / "dropped") if (args.out / "dropped").exists() else []
    # the references the rewrites were made from: the build's seed rows (kept or not)
    seeds = {r["id"]: r for r in [*rows(args.out / ".mathaug" / "seeds"), *kept, *dropped] if r["method"] == "seed"}
    rewrites = [r for r in [*kept, *dropped] if r["method"] == "cot_length"]
    kept_ids = {r["id"] for r in kept}
    rejected = Counter()
    per_tier: dict[str, list[tuple[int, int]]] = defaultdict(list)
    by_source: dict[str, Counter] = defaultdict(Counter)
    answered = survived = 0
    for r in rewrites:
        meta = json.loads(r["method_params"])
        source = r["source"]["dataset"] if r.get("source") else "?"
        by_source[source]["attempted"] += 1
        stage_reject = r.get("dropped_by") == "stage:cot_length"
        reason = (r["verification"]["detail"] or "unknown").split(":", 1)[0].split(" ", 1)[0] if stage_reject else None
        if reason is not None:
            rejected[reason] += 1
        if reason not in NO_ANSWER:  # every other rejection judged an answer the rewrite gave
            answered += 1
        if not stage_reject:
            survived += 1
            by_source[source]["verified"] += 1
            by_source[source]["kept_by_selection"] += r["id"] in kept_ids
            per_tier[meta.get("tier") or "-"].append((meta["tokens_before"], meta["tokens_after"]))
    attempted = len(rewrites)
    matched = answered - rejected["wrong_answer"]
    print(f"rewrites attempted {attempted}; with an answer {answered}; answer = gold {matched}/{answered}; "
          f"verified (answer = gold, reached by the working, every gate passed) {survived}/{answered} "
          f"({survived / max(answered, 1):.0%})")
    print("rejected by the stage: " + ", ".join(f"{k} {v}" for k, v in rejected.most_common()))
    print("by source: " + "; ".join(f"{k}: {dict(v)}" for k, v in sorted(by_source.items())))
    print("\n| tier | verified rewrites | mean tokens before (reference) | mean tokens after (rewrite) | after / before |")
    print("| --- | --- | --- | --- | --- |")
    for tier in sorted(per_tier):
        pairs = per_tier[tier]
        before = sum(b for b, _ in pairs) / len(pairs)
        after = sum(a for _, a in pairs) / len(pairs)
        print(f"| {tier} | {len(pairs)} | {before:.0f} | {after:.0f} | {after / before:.2f} |")
    manifest = json.loads((args.out / "manifest.json").read_text())
    f = manifest["funnel"].get("cot_length", {})
    print(f"\nrequests {f.get('requests')}, tokens in/out {f.get('tokens_in')}/{f.get('tokens_out')}")
    shown = [r for r in rewrites if r.get("dropped_by") != "stage:cot_length"][: args.show]
    for r in shown:
        meta = json.loads(r["method_params"])
        parent = seeds.get((r.get("parent_ids") or [None])[0])
        print(f"\n=== {meta.get('tier')} | tokens {meta['tokens_before']} -> {meta['tokens_after']} | "
              f"kept by selection: {r['id'] in kept_ids}\nQ: {r['question']}")
        print(f"--- BEFORE (reference):\n{parent['solution'] if parent else '(reference row not found)'}")
        print(f"--- AFTER:\n{r['solution']}")


if __name__ == "__main__":
    main()
