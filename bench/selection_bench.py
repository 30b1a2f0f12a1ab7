"""Issue 17 figure: length-aware selection among several verified solutions per question, on one core.

The selection is the build's solution-level keep rule (``pipeline.dedup.keep``): rank every solution of a question
by verified-first, the recipe's preference (``shorter`` or ``near_target`` per difficulty tier), stage and id, and
keep ``max_solutions_per_question``. Measured two ways over the same 100,000 solutions (25,000 questions x 4):

- the rule itself (keys, rank columns, ``choose_keepers_limited``), what selection costs;
- the build's whole ``exact_dedup`` step (rows parked on disk and streamed back), what a build pays.

The baseline is the straightforward Python way: group solutions by question in a dict and ``min``/``sorted`` each
group with a key function. Target: >= 50,000 solutions/s for the rule.

    .venv/bin/python bench/selection_bench.py [--questions 25000] [--per-question 4]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pipeline.dedup import exact_dedup  # noqa: E402
from pipeline.dedup.keep import (  # noqa: E402
    RankColumns,
    choose_keepers_limited,
    preference_value,
    stage_rank_table,
)
from pipeline.dedup.text import exact_key  # noqa: E402
from pipeline.records import make_record  # noqa: E402

TIERS = ["simple", "moderate", "highly complex", "Level 3", "Level 5"]


def solutions(questions: int, per: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for q in range(questions):
        question = f"Question {q}: a farmer has {q} cows and buys {rng.randint(2, 99)} more. How many cows?"
        tier = rng.choice(TIERS)
        for k in range(per):
            words = rng.randint(20, 600)
            solution = " ".join(["step"] * words) + f" variant {k} \\boxed{{{q}}}"
            rows.append(make_record(question=question, solution=solution, answer=str(q),
                                    method=rng.choice(["seed", "cot_length", "code_tir"]), difficulty=tier,
                                    verification={"status": "verified", "method": "recompute"}))
    return rows


def rule(rows: list[dict], prefer: str, keep: int) -> np.ndarray:
    ranks = stage_rank_table(["seed", "cot_length", "code_tir"])
    cols = RankColumns(prefer=(prefer,))
    cols.add(rows, [r["method"] for r in rows], ranks)
    questions = np.array([int.from_bytes(exact_key(r["question"])[:8], "little") for r in rows], dtype=np.uint64)
    labels = np.unique(questions, return_inverse=True)[1].astype(np.int64)
    subgroups = np.arange(len(rows), dtype=np.int64)
    kept, _, _ = choose_keepers_limited(labels, subgroups, *cols.arrays(), limit=keep, whole_subgroups=False,
                                        preferences=cols.preference_arrays())
    return kept


def baseline(rows: list[dict], prefer: str, keep: int) -> int:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["question"], []).append(r)
    kept = 0
    for group in groups.values():
        kept += len(sorted(group, key=lambda r: (preference_value(r, prefer), r["id"]))[:keep])
    return kept


def timed(fn, *args) -> tuple[float, object]:  # noqa: ANN001
    """CPU seconds of one call: the work is single-threaded, and CPU time is what a loaded machine leaves honest."""
    started = time.process_time()
    out = fn(*args)
    return time.process_time() - started, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=25_000)
    ap.add_argument("--per-question", type=int, default=4)
    args = ap.parse_args()
    rows = solutions(args.questions, args.per_question)
    n = len(rows)
    report: dict[str, object] = {"solutions": n, "questions": args.questions}
    for prefer in ("shorter", "near_target"):
        best_rule = min(timed(rule, rows, prefer, 1)[0] for _ in range(3))
        best_base = min(timed(baseline, rows, prefer, 1)[0] for _ in range(3))
        kept = int(rule(rows, prefer, 1).sum())
        assert kept == args.questions == baseline(rows, prefer, 1)
        report[prefer] = {"rule_solutions_per_s": round(n / best_rule), "baseline_solutions_per_s": round(n / best_base)}
    started = time.process_time()
    out = list(exact_dedup(rows, stage_order=["seed", "cot_length", "code_tir"], max_solutions=1, prefer=["shorter"]))
    step = time.process_time() - started
    report["exact_dedup_step_solutions_per_s"] = round(n / step)
    report["kept"] = len(out)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
