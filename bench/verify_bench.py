"""Answer-verifier bench: mathaug's verifier vs Hugging Face math-verify on the same labelled pairs, same run.

Prints accuracy, false accepts, false rejects and pairs/second for both, and the ratios. The labelled suite is
bench/data/verify_cases.jsonl (hand-labelled final-answer pairs across the categories of issue 3, plus full
model outputs in GSM8K and MATH styles). math-verify is a dev-only dependency.

    python bench/verify_bench.py [--repeat 4] [--cases PATH] [--show-errors]
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.verify import answers_match, core, grade, grade_many, stats, warm_up  # noqa: E402
from pipeline.verify.normalize import clean_latex  # noqa: E402

CASES = ROOT / "bench" / "data" / "verify_cases.jsonl"


def load(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in rows:
        if r["kind"] not in ("answer", "output") or not isinstance(r["label"], bool):
            raise ValueError(f"bad case {r.get('id')}")
    return rows


def ours_one(row: dict) -> bool:
    if row["kind"] == "answer":
        return answers_match(row["given"], row["gold"])
    return grade(row["given"], row["gold"]).correct


def ours_batch(rows: list[dict]) -> list[bool]:
    """Batch API as a pipeline would call it: answers and outputs in two grade_many calls."""
    out: dict[int, bool] = {}
    for kind, extract in (("answer", False), ("output", True)):
        idx = [k for k, r in enumerate(rows) if r["kind"] == kind]
        verdicts = grade_many(
            [rows[k]["given"] for k in idx], [rows[k]["gold"] for k in idx], extract=extract
        )
        out.update({k: v.correct for k, v in zip(idx, verdicts, strict=True)})
    return [out[k] for k in range(len(rows))]


def math_verify_one(row: dict) -> bool:
    from math_verify import parse, verify

    try:
        gold = parse("\\boxed{" + row["gold"] + "}")
        given = row["given"] if row["kind"] == "output" else "\\boxed{" + row["given"] + "}"
        return bool(verify(gold, parse(given)))
    except Exception:  # math-verify raises on some inputs; a crash is a reject
        return False


def score(rows: list[dict], preds: list[bool]) -> dict:
    n = len(rows)
    fa = sum(p and not r["label"] for r, p in zip(rows, preds, strict=True))
    fr = sum(r["label"] and not p for r, p in zip(rows, preds, strict=True))
    return {"n": n, "acc": (n - fa - fr) / n, "fa": fa, "fr": fr}


def timed(fn, items: list[dict]) -> tuple[list[bool], float]:
    start = time.perf_counter()
    preds = fn(items)
    return preds, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=Path, default=CASES)
    ap.add_argument("--repeat", type=int, default=4, help="copies of the suite in the throughput run")
    ap.add_argument("--show-errors", action="store_true")
    args = ap.parse_args()

    try:
        from importlib.metadata import version

        import math_verify  # noqa: F401

        mv_version = version("math-verify")
    except ImportError:
        sys.exit("math-verify is not installed (pip install math-verify): it is the baseline of this bench")

    rows = load(args.cases)
    n_out = sum(r["kind"] == "output" for r in rows)
    print(
        f"labelled pairs: {len(rows)} ({len(rows) - n_out} final answers, {n_out} full outputs), "
        f"{sum(r['label'] for r in rows)} positive"
    )

    warm_up()
    math_verify_one(rows[0])

    # Accuracy: one call per pair, the plain API.
    ours = [ours_one(r) for r in rows]
    theirs = [math_verify_one(r) for r in rows]

    # Throughput: the same shuffled list for both (math-verify must run on the main thread: SIGALRM).
    bulk = [r for _ in range(args.repeat) for r in rows]
    random.Random(0).shuffle(bulk)
    ours_bulk, t_ours = timed(ours_batch, bulk)
    _, t_theirs = timed(lambda items: [math_verify_one(r) for r in items], bulk)
    ours_seq_rows = bulk[: len(rows)]
    clean_latex.cache_clear()  # the accuracy pass above warmed the caches of this process: start cold
    core.parsed_gold.cache_clear()
    _, t_ours_seq = timed(lambda items: [ours_one(r) for r in items], ours_seq_rows)
    if score(bulk, ours_bulk) != score(bulk, [ours_one(r) for r in bulk]):
        print("WARNING: batch and single-call verdicts differ")

    s_ours, s_theirs = score(rows, ours), score(rows, theirs)
    pps_ours, pps_theirs = len(bulk) / t_ours, len(bulk) / t_theirs
    pps_seq = len(ours_seq_rows) / t_ours_seq
    print()
    print(f"{'verifier':<24}{'accuracy':>9}{'false acc':>11}{'false rej':>11}{'pairs/s':>10}")
    for name, s, pps in (
        ("mathaug (grade_many)", s_ours, pps_ours),
        (f"math-verify {mv_version}", s_theirs, pps_theirs),
    ):
        print(
            f"{name:<24}{s['acc']:>8.1%}{s['fa']:>6} ({s['fa'] / s['n']:.1%}){s['fr']:>5} ({s['fr'] / s['n']:.1%})"
            f"{pps:>9.0f}"
        )
    print(f"mathaug single calls, one thread: {pps_seq:.0f} pairs/s")
    print(
        f"ratio mathaug / math-verify: accuracy {s_ours['acc'] / s_theirs['acc']:.3f}x, "
        f"errors {(s_theirs['fa'] + s_theirs['fr']) / max(1, s_ours['fa'] + s_ours['fr']):.1f}x fewer, "
        f"throughput {pps_ours / pps_theirs:.1f}x (single-call {pps_seq / pps_theirs:.1f}x)"
    )
    print(f"mathaug counters: {stats()}")

    print()
    print(f"{'category':<20}{'n':>5}{'mathaug':>9}{'math-verify':>13}")
    by_cat: dict[str, list[int]] = collections.defaultdict(list)
    for k, r in enumerate(rows):
        by_cat[r["category"]].append(k)
    for cat, idx in sorted(by_cat.items()):
        a = sum(ours[k] == rows[k]["label"] for k in idx) / len(idx)
        b = sum(theirs[k] == rows[k]["label"] for k in idx) / len(idx)
        print(f"{cat:<20}{len(idx):>5}{a:>9.1%}{b:>13.1%}")

    if args.show_errors:
        print()
        for k, r in enumerate(rows):
            for name, preds in (("mathaug", ours), ("math-verify", theirs)):
                if preds[k] != r["label"]:
                    print(
                        f"{name:<12} {r['id']:<24} label={r['label']!s:<5} given={r['given'][:60]!r} gold={r['gold']!r}"
                    )


if __name__ == "__main__":
    main()
