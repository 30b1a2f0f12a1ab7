"""Query evolution against a real model: per type, the yield (verified rows per seed) and why rows were rejected.

    /work/shared/tools/real-model.sh start      # Qwen2.5-Coder-0.5B on llama.cpp, http://127.0.0.1:8011/v1
    MATHAUG_BACKEND=openai MATHAUG_BASE_URL=http://127.0.0.1:8011/v1 MATHAUG_MODEL=qwen2.5-coder-0.5b-instruct \
      MATHAUG_SAMPLES=2 MATHAUG_MIN_AGREE=1.0 MATHAUG_MAX_TOKENS=320 MATHAUG_REWRITE_MAX_TOKENS=220 \
      .venv/bin/mathaug build recipes/evolve.yaml -o /tmp/evolve_real --limit 6
    .venv/bin/python bench/evolve_real.py /tmp/evolve_real [--show 20]

Fewer steps, more kept rows (a weak solver solves few multi-step problems): `--prepare DIR` writes DIR/seeds.jsonl
(the shipped sample's seeds after the first `--skip` (30) whose GSM8K solution has at most `--max-steps` (2)
calculator annotations) and DIR/evolve.yaml (the shipped recipe reading them, `max_concurrency: 2`), then prints
the build command; the fifth run in bench/RESULTS.md used it with `--limit 56`.

Reads the build's output (data/ and dropped/): kept rows by `method_params.type`, the stage's rejected candidates
(`dropped_by: stage:evolve`, reason = the first word of `verification.detail`) and later drops (verify, dedup).
Prints a markdown table for bench/RESULTS.md and, with --show, kept rows to read.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq


def rows(directory: Path) -> list[dict]:
    return [r for path in sorted(directory.glob("*.parquet")) for r in pq.read_table(path).to_pylist()]


def from_cache(out: Path, seeds_file: Path) -> None:
    """The teacher's rewrites answered so far (the request cache, e.g. of a build still running on a slow server),
    each judged by the stage's own rewrite gates: per type, how many pass and why the others do not."""
    import sqlite3
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipeline.stages.evolve import EvolveCandidate, Params, _rewrite_check

    seeds = [json.loads(line) for line in seeds_file.read_text().splitlines()]
    check = _rewrite_check(Params())
    db = sqlite3.connect(f"file:{out / '.mathaug' / 'llm_cache.sqlite'}?mode=ro", uri=True)
    verdicts: dict[str, Counter] = defaultdict(Counter)
    for template, slot, response in db.execute("SELECT template, slot, response FROM entries WHERE stage='evolve'"):
        if template == "evolve/solve.v1":
            continue
        _, step, seed_id, kind, *_ = slot.split("|")
        seed = seeds[int(seed_id.rsplit(":", 1)[1]) - 1]
        gold = seed["answer"].rsplit("####", 1)[1].strip()
        cand = EvolveCandidate(parent={"question": seed["question"], "answer": gold}, slot=slot, seed=0, type=kind,
                               template=step, gold=gold)
        data = json.loads(response)
        for text, finish in zip(data["texts"], data["finish_reasons"], strict=True):
            reason = check(cand, text, finish) or "passes the gates"
            verdicts[kind][reason + (" (re-ask)" if "|reask" in slot else "")] += 1
            print(f"--- {kind}{' re-ask' if '|reask' in slot else ''}: {reason}\n{text[:400]}")
    print("\n| type | teacher rewrites judged by the stage's gates |\n| --- | --- |")
    for kind in sorted(verdicts):
        print(f"| {kind} | " + ", ".join(f"{k} {v}" for k, v in verdicts[kind].most_common()) + " |")


def prepare(directory: Path, seeds_file: Path, skip: int, max_steps: int) -> None:
    """Write the short-solution seed subset and a copy of recipes/evolve.yaml that reads it."""
    root = Path(__file__).resolve().parents[1]
    directory.mkdir(parents=True, exist_ok=True)
    lines = seeds_file.read_text().splitlines()[skip:]
    easy = [line for line in lines if json.loads(line)["answer"].count("<<") <= max_steps]
    (directory / "seeds.jsonl").write_text("".join(line + "\n" for line in easy))
    recipe = (root / "recipes" / "evolve.yaml").read_text()
    recipe = recipe.replace("path: data/seeds/gsm8k_train_sample.jsonl", f"path: {(directory / 'seeds.jsonl').resolve()}")
    (directory / "evolve.yaml").write_text(recipe.replace("max_concurrency: 64", "max_concurrency: 2"))
    print(f"{len(easy)} of {len(lines)} seeds after the first {skip} have at most {max_steps} steps: "
          f"{directory / 'seeds.jsonl'}\n"
          f"MATHAUG_BACKEND=openai MATHAUG_BASE_URL=http://127.0.0.1:8011/v1 MATHAUG_MODEL=qwen2.5-coder-0.5b-instruct "
          f'MATHAUG_EVOLVE_TYPES="[rephrase, fobar]" MATHAUG_SAMPLES=1 MATHAUG_MIN_AGREE=1 '
          f"MATHAUG_REWRITE_MAX_TOKENS=320 MATHAUG_MAX_TOKENS=384 \\\n"
          f"  .venv/bin/mathaug build {directory / 'evolve.yaml'} -o OUT --direct --limit 56\n"
          f"then: .venv/bin/python bench/evolve_real.py OUT --seeds {directory / 'seeds.jsonl'} --show 20")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path, help="the build's output directory (with --prepare: where to write)")
    ap.add_argument("--show", type=int, default=0)
    ap.add_argument("--cache", action="store_true", help="judge the cached rewrites (the build need not be done)")
    ap.add_argument("--seeds", type=Path, default=Path("data/seeds/gsm8k_train_sample.jsonl"))
    ap.add_argument("--prepare", action="store_true", help="write OUT/seeds.jsonl and OUT/evolve.yaml (see above)")
    ap.add_argument("--skip", type=int, default=30)
    ap.add_argument("--max-steps", type=int, default=2)
    args = ap.parse_args()
    if args.prepare:
        prepare(args.out, args.seeds, args.skip, args.max_steps)
        return
    if args.cache:
        from_cache(args.out, args.seeds)
        return
    manifest = json.loads((args.out / "manifest.json").read_text())
    seeds = int(manifest["funnel"]["evolve"]["in"])
    kept = [r for r in rows(args.out / "data") if r["method"] == "evolve"]
    dropped = rows(args.out / "dropped") if (args.out / "dropped").exists() else []
    by_type: dict[str, Counter] = defaultdict(Counter)
    for r in kept:
        by_type[json.loads(r["method_params"])["type"]]["kept"] += 1
    for r in dropped:
        if r["method"] != "evolve":
            continue
        kind = json.loads(r["method_params"])["type"]
        if r["dropped_by"] == "stage:evolve":
            reason = (r["verification"]["detail"] or "unknown").split(":", 1)[0]
        else:
            reason = f"{r['dropped_by']}"
        by_type[kind][reason] += 1
    print(f"seeds: {seeds}; model: {manifest.get('models', {}).get('teacher', {}).get('model', '?')}")
    print("| type | kept | verified rows / seed | rejected: reasons |")
    print("| --- | --- | --- | --- |")
    for kind in sorted(by_type):
        counts = by_type[kind]
        reasons = ", ".join(f"{k} {v}" for k, v in counts.most_common() if k != "kept")
        print(f"| {kind} | {counts['kept']} | {counts['kept'] / seeds:.2f} | {reasons} |")
    total = Counter()
    for counts in by_type.values():
        total.update(counts)
    print(f"| all | {total['kept']} | {total['kept'] / seeds:.2f} | "
          + ", ".join(f"{k} {v}" for k, v in total.most_common() if k != "kept") + " |")
    f = manifest["funnel"]["evolve"]
    print(f"\nrequests {f.get('requests')}, tokens in/out {f.get('tokens_in')}/{f.get('tokens_out')}, "
          f"seconds {f.get('seconds')}")
    for r in kept[: args.show]:
        params = json.loads(r["method_params"])
        print(f"\n--- {params['type']} ({r['verification']['detail']})\nQ: {r['question']}\nA: {r['answer']}\n"
              f"S: {r['solution'][:600]}")


if __name__ == "__main__":
    main()
