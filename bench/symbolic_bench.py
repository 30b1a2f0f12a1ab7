"""How much of GSM8K train the `symbolic` stage can template, how diverse its variants are, and how fast.

Run: .venv/bin/python bench/symbolic_bench.py [--variants 3] [--diversity-draws 10] [--before b15ec0a]
     .venv/bin/python bench/symbolic_bench.py --read 100   # print a reproducible sample of variants to read
Uses ../shared/data/gsm8k/train.jsonl when present (all 7,473 problems), else the shipped 400-row sample.
Baseline in the same run: reading + parsing the same seeds (the stage's cost relative to just loading the data).
Chain check: every variant's trace is recomputed with Python Fractions and must end in its answer (this only
proves the rewrite is self-consistent; whether the answer is right is bench/symbolic_audit.py's job).
Diversity: with ``--diversity-draws`` variants asked per seed, the mean number of distinct variants per
templated seed. ``--before REF`` measures the stage as committed at REF in the same run (default: version 1).
"""

from __future__ import annotations

import argparse
import random
import re
import time
from collections import Counter
from fractions import Fraction

from symbolic_audit import BEFORE_REF, TOKEN, load_stage

from pipeline.funnel import Funnel
from pipeline.io.seeds import SeedSpec, load_seeds
from pipeline.paths import DATA_DIR, ROOT
from pipeline.stages import StageContext

SHARED = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def chain_recomputes(solution: str, answer: str, annotation: re.Pattern) -> bool:
    last = None
    for ann in annotation.finditer(solution):
        expr = re.sub(r"(\d+(?:\.\d+)?|\.\d+)", r"Fraction('\1')", ann.group(1).replace("x", "*"))
        value = eval(expr, {"Fraction": Fraction})  # noqa: S307 - our own digits-and-operators text
        if value != Fraction(ann.group(2).replace(",", "")):
            return False
        last = value
    return last is not None and Fraction(answer) == last


def measure(stage, seeds: list[dict], variants: int, diversity_draws: int, load_s: float) -> None:
    funnel = Funnel()
    t0 = time.perf_counter()
    out = stage.run(seeds, stage.Params(variants_per_seed=variants), StageContext(stage="symbolic", funnel=funnel))
    stage_s = time.perf_counter() - t0
    templated = funnel.get("symbolic", "templated")
    with_variant = len({r["parent_ids"][0] for r in out})
    exact = sum(chain_recomputes(r["solution"], r["answer"], stage.ANNOTATION) for r in out)
    print(f"  templated: {int(templated)} ({templated / len(seeds):.1%} of seeds); "
          f"with >=1 variant: {with_variant} ({with_variant / len(seeds):.1%})")
    print(f"  variants ({variants} asked per seed): {len(out)} in {stage_s:.2f}s = {len(out) / stage_s:,.0f} "
          f"variants/s ({len(seeds) / stage_s:,.0f} seeds/s); stage cost = "
          f"{stage_s / load_s:.1f}x loading the seeds")
    print(f"  chain check: {exact}/{len(out)} variants' traces recompute to their answers")
    reasons = Counter(funnel.reasons("symbolic"))
    print("  rejections:", ", ".join(f"{k}={v}" for k, v in reasons.most_common()))
    if diversity_draws:
        funnel = Funnel()
        many = stage.run(
            seeds, stage.Params(variants_per_seed=diversity_draws), StageContext(stage="symbolic", funnel=funnel)
        )
        per_seed = Counter(r["parent_ids"][0] for r in many)
        templated = funnel.get("symbolic", "templated")
        print(f"  diversity: {diversity_draws} variants asked per seed -> {len(many) / templated:.2f} distinct "
              f"per templated seed (median {sorted(per_seed.values())[len(per_seed) // 2]} among seeds with any)")


def show_sample(stage, seeds: list[dict], count: int) -> None:
    """Print ``count`` variants (one per random templated seed) with each changed number marked old→new."""
    out = stage.run(seeds, stage.Params(variants_per_seed=1), StageContext(stage="symbolic", seed=2026))
    parents = {s["id"]: s for s in seeds}
    for k, rec in enumerate(random.Random(2026).sample(out, min(count, len(out)))):
        parent = parents[rec["parent_ids"][0]]
        marked = mark_changes(parent["question"], rec["question"])
        print(f"{k + 1:3d} {parent['source'].get('seed_id', '')} answer {rec['answer']}: {marked}\n")


def mark_changes(original: str, variant: str) -> str:
    """The original question with each number the variant changed written [old→new]."""
    new_numbers = iter(TOKEN.findall(variant))

    def mark(m: re.Match) -> str:
        new = next(new_numbers, "?")
        return m.group(0) if new == m.group(0) else f"[{m.group(0)}→{new}]"

    return TOKEN.sub(mark, original)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", type=int, default=3)
    ap.add_argument("--diversity-draws", type=int, default=10)
    ap.add_argument("--before", default=BEFORE_REF, help="git ref of the stage to compare with ('' to skip)")
    ap.add_argument("--read", type=int, default=0, help="print this many variants to read, then stop")
    args = ap.parse_args()
    path = SHARED if SHARED.exists() else DATA_DIR / "seeds" / "gsm8k_train_sample.jsonl"

    t0 = time.perf_counter()
    seeds = load_seeds(SeedSpec(format="gsm8k", path=str(path)))
    load_s = time.perf_counter() - t0
    current = load_stage(None)
    if args.read:
        show_sample(current, seeds, args.read)
        return
    print(f"seeds: {len(seeds)} from {path.name}")
    print(f"current stage (VERSION {current.VERSION}):")
    measure(current, seeds, args.variants, args.diversity_draws, load_s)
    if args.before:
        before = load_stage(args.before)
        print(f"stage at {args.before} (VERSION {before.VERSION}):")
        measure(before, seeds, args.variants, args.diversity_draws, load_s)


if __name__ == "__main__":
    main()
