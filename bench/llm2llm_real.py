"""LLM2LLM against a real model over HTTP (every role: student, teacher, solver), a few seeds, a few rounds.

    /work/shared/tools/real-model.sh start     # prints base_url and the model name
    .venv/bin/python bench/llm2llm_real.py --base-url http://127.0.0.1:8011/v1 --limit 10 --out /tmp/l2l-real

Prints, per round: the student's accuracy on the set and on a held-out GSM8K test sample, wrong seeds, new
problems asked / parsed / verified / kept, the rejection reasons, then the kept rows quoted and a few dropped
ones. A rerun answers every request from OUT's cache (the funnel's requests are 0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.build import run_build  # noqa: E402
from pipeline.recipe import parse_recipe  # noqa: E402

HELD_OUT = Path("/work/shared/data/gsm8k/test.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8011/v1")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--held-out", type=int, default=5, help="GSM8K test problems graded each round")
    parser.add_argument("--max-tokens", type=int, default=320)
    parser.add_argument("--solver-samples", type=int, default=2, help="solver samples; min_agree is half of them")
    parser.add_argument("--out", type=Path, default=Path("/tmp/llm2llm-real"))
    parser.add_argument("--fresh", action="store_true", help="discard the run in OUT (its request cache stays)")
    args = parser.parse_args()

    os.environ.update(MATHAUG_BACKEND="openai", MATHAUG_BASE_URL=args.base_url, MATHAUG_MODEL=args.model,
                      MATHAUG_MAX_TOKENS=str(args.max_tokens), MATHAUG_ROUNDS=str(args.rounds))
    data = yaml.safe_load((ROOT / "recipes" / "llm2llm.yaml").read_text())
    params = data["stages"][0]["stages"][0]["params"]
    params.update(solver_samples=args.solver_samples, min_agree=max(1, args.solver_samples // 2))
    if HELD_OUT.exists() and args.held_out:
        held = Path(tempfile.gettempdir()) / f"llm2llm-held-out-{args.held_out}.jsonl"  # a stable path: in the key
        held.write_text("".join(HELD_OUT.read_text().splitlines(keepends=True)[: args.held_out]))
        params.update(held_out=str(held), held_out_limit=args.held_out)
    recipe = parse_recipe(yaml.safe_dump(data), source="llm2llm.yaml", base_dir=ROOT / "recipes")
    result = run_build(recipe, args.out, limit=args.limit, fresh=args.fresh)

    print(f"## llm2llm on {args.model} ({args.limit} seeds, {result.seconds:.0f} s)\n")
    print("| round | student acc. (set) | held-out acc. | wrong seeds | asked | parsed | verified | made | kept |"
          " requests | stop |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for entry in result.manifest["rounds"]["llm2llm"]:
        f = entry["funnel"]["llm2llm"]
        held = f"{f.get('held_out_correct', 0):.0f}/{f.get('held_out_total', 0):.0f}" if f.get("held_out_total") else "-"
        print(f"| {entry['round']} | {f['student_correct']:.0f}/{f['student_total']:.0f} | {held} | "
              f"{f['wrong_seeds']:.0f} | {f['teacher_asked']:.0f} | {f['teacher_items']:.0f} | "
              f"{f['solver_verified']:.0f} | {entry['rows']} | {entry.get('kept', '')} | {f.get('requests', 0):.0f} | "
              f"{entry.get('stopped') or ''} |")
    print("\nrejections per round:")
    for entry in result.manifest["rounds"]["llm2llm"]:
        reasons = {k.removeprefix("rejected:"): int(v) for k, v in entry["funnel"]["llm2llm"].items()
                   if k.startswith("rejected:")}
        print(f"- round {entry['round']}: {json.dumps(reasons)}")
    rows = [r for r in pq.read_table(args.out / "data").to_pylist() if r["method"] == "llm2llm"]
    seeds = {r["id"]: r for r in pq.read_table(args.out / "data").to_pylist() if r["method"] == "seed"}
    print(f"\nkept llm2llm rows: {len(rows)}")
    for row in rows:
        parent = seeds.get((row["parent_ids"] or [None])[0], {})
        print(f"\n- round {row['round']}, from seed: {' '.join((parent.get('question') or '?').split())[:160]}")
        print(f"  Q: {' '.join(row['question'].split())}")
        print(f"  A: {' '.join(row['solution'].split())}  (answer {row['answer']}; {row['verification']['detail']})")
    dropped = [r for r in pq.read_table(args.out / "dropped").to_pylist()] if (args.out / "dropped").exists() else []
    print(f"\ndropped: {len(dropped)}; a few:")
    for row in dropped[:6]:
        print(f"- [{row['dropped_by']}] {(row.get('drop_detail') or '')[:120]!r}: {' '.join((row['question'] or '').split())[:200]}")


if __name__ == "__main__":
    main()
