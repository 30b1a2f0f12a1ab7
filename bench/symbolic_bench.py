"""How much of GSM8K train the `symbolic` stage can template, how fast, and an exactness audit.

Run: .venv/bin/python bench/symbolic_bench.py [--variants 3]
Uses ../shared/data/gsm8k/train.jsonl when present (all 7,473 problems), else the shipped 400-row sample.
Baseline in the same run: reading + parsing the same seeds (the stage's cost relative to just loading the data).
Audit: every variant's trace is recomputed independently with Python Fractions and must end in its answer.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from fractions import Fraction

from pipeline.funnel import Funnel
from pipeline.io.seeds import SeedSpec, load_seeds
from pipeline.paths import DATA_DIR, ROOT
from pipeline.stages import StageContext
from pipeline.stages.symbolic import ANNOTATION, Params, run

SHARED = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def audit(solution: str, answer: str) -> bool:
    last = None
    for ann in ANNOTATION.finditer(solution):
        expr = re.sub(r"(\d+(?:\.\d+)?|\.\d+)", r"Fraction('\1')", ann.group(1).replace("x", "*"))
        value = eval(expr, {"Fraction": Fraction})  # noqa: S307 - our own digits-and-operators text
        if value != Fraction(ann.group(2).replace(",", "")):
            return False
        last = value
    return last is not None and Fraction(answer) == last


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", type=int, default=3)
    args = ap.parse_args()
    path = SHARED if SHARED.exists() else DATA_DIR / "seeds" / "gsm8k_train_sample.jsonl"

    t0 = time.perf_counter()
    seeds = load_seeds(SeedSpec(format="gsm8k", path=str(path)))
    load_s = time.perf_counter() - t0

    funnel = Funnel()
    t0 = time.perf_counter()
    out = run(seeds, Params(variants_per_seed=args.variants), StageContext(stage="symbolic", funnel=funnel))
    stage_s = time.perf_counter() - t0

    templated = funnel.get("symbolic", "templated")
    templated_seeds = len({r["parent_ids"][0] for r in out})
    exact = sum(audit(r["solution"], r["answer"]) for r in out)
    print(f"seeds: {len(seeds)} from {path.name}")
    print(f"templated: {int(templated)} ({templated / len(seeds):.1%} of GSM8K train); "
          f"with >=1 variant: {templated_seeds} ({templated_seeds / len(seeds):.1%})")
    print(f"variants: {len(out)} in {stage_s:.2f}s = {len(out) / stage_s:,.0f} variants/s "
          f"({len(seeds) / stage_s:,.0f} seeds/s)")
    print(f"baseline (load+parse seeds): {len(seeds) / load_s:,.0f} seeds/s; "
          f"stage cost ratio = {(stage_s / len(seeds)) / (load_s / len(seeds)):.1f}x loading")
    print(f"exactness audit: {exact}/{len(out)} variants recompute independently ({exact / max(len(out), 1):.2%})")
    reasons = Counter(funnel.reasons("symbolic"))
    print("rejections:", ", ".join(f"{k}={v}" for k, v in reasons.most_common()))


if __name__ == "__main__":
    main()
