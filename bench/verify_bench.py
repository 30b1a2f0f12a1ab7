"""Answer-verifier bench: mathaug's verifier vs Hugging Face math-verify on the same labelled pairs, same run.

Prints accuracy, false accepts, false rejects and pairs/second for both, and the ratios. The labelled suite is
bench/data/verify_cases.jsonl (hand-labelled final-answer pairs across the categories of issue 3, plus full
model outputs in GSM8K and MATH styles). The recall suites bench/data/verify_recall_<class>.jsonl (issue 22)
are scored per class before and after: "before" is the verifier at `--baseline-rev`, checked out from git
into a temporary folder and run in a child process on the same pairs in the same run. math-verify is a
dev-only dependency.

    python bench/verify_bench.py [--repeat 4] [--cases PATH] [--baseline-rev REV] [--show-errors]
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.verify import answers_match, core, grade, grade_many, stats, warm_up  # noqa: E402
from pipeline.verify.normalize import clean_latex  # noqa: E402

CASES = ROOT / "bench" / "data" / "verify_cases.jsonl"
RECALL_CASES = sorted((ROOT / "bench" / "data").glob("verify_recall_*.jsonl"))
# The verifier as it was when issue 22 (recall) was taken up: the "before" of the per-class table.
BASELINE_REV = "b15ec0ac8796e9f5dd0f7033716cad18565c5e3f"
_VERDICTS_SCRIPT = """
import json, sys
from pipeline.verify import answers_match, grade
rows = json.load(sys.stdin)
print(json.dumps([answers_match(r["given"], r["gold"]) if r["kind"] == "answer"
                  else grade(r["given"], r["gold"]).correct for r in rows]))
"""


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


def baseline_verdicts(rev: str, rows: list[dict]) -> list[bool]:
    """Verdicts of the verifier at git revision `rev` (single calls), run from a temporary checkout."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "pipeline/__init__.py", "pipeline/verify"],
        check=True,
        capture_output=True,
    ).stdout
    with tempfile.TemporaryDirectory(prefix="verify-baseline-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": tmp}
        done = subprocess.run(
            [sys.executable, "-c", _VERDICTS_SCRIPT],
            input=json.dumps(rows),
            capture_output=True,
            text=True,
            cwd=tmp,
            env=env,
            check=True,
        )
    return json.loads(done.stdout)


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


def _fa_fr(s: dict) -> str:
    return f"{s['acc']:>8.1%}{s['fa']:>4}{s['fr']:>4}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=Path, default=CASES)
    ap.add_argument("--repeat", type=int, default=4, help="copies of the suites in the throughput run")
    ap.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision of the 'before' verifier")
    ap.add_argument("--no-baseline", action="store_true", help="skip the before/after columns")
    ap.add_argument("--show-errors", action="store_true")
    args = ap.parse_args()

    try:
        from importlib.metadata import version

        import math_verify  # noqa: F401

        mv_version = version("math-verify")
    except ImportError:
        sys.exit("math-verify is not installed (pip install math-verify): it is the baseline of this bench")

    main_rows = load(args.cases)
    recall_rows = [r for path in RECALL_CASES for r in load(path)]
    rows = main_rows + recall_rows
    n_out = sum(r["kind"] == "output" for r in rows)
    print(
        f"labelled pairs: {len(rows)} ({len(rows) - n_out} final answers, {n_out} full outputs), "
        f"{sum(r['label'] for r in rows)} positive; {len(main_rows)} in {args.cases.name}, "
        f"{len(recall_rows)} in {len(RECALL_CASES)} recall suites"
    )

    warm_up()
    math_verify_one(rows[0])

    # Accuracy: one call per pair, the plain API (the recall pass is timed: its pairs are the hard classes).
    n_main = len(main_rows)
    ours = [ours_one(r) for r in main_rows]
    recall_ours, t_recall_ours = timed(lambda items: [ours_one(r) for r in items], recall_rows)
    ours += recall_ours
    theirs = [math_verify_one(r) for r in main_rows]
    recall_theirs, t_recall_theirs = timed(lambda items: [math_verify_one(r) for r in items], recall_rows)
    theirs += recall_theirs
    before = None if args.no_baseline else baseline_verdicts(args.baseline_rev, rows)

    # Throughput on the main suite (its mix of categories is the one issue 3 measured): the same shuffled list
    # for both (math-verify must run on the main thread: SIGALRM).
    bulk = [r for _ in range(args.repeat) for r in main_rows]
    random.Random(0).shuffle(bulk)
    ours_bulk, t_ours = timed(ours_batch, bulk)
    _, t_theirs = timed(lambda items: [math_verify_one(r) for r in items], bulk)
    ours_seq_rows = bulk[:n_main]
    clean_latex.cache_clear()  # the accuracy pass above warmed the caches of this process: start cold
    core.parsed_gold.cache_clear()
    _, t_ours_seq = timed(lambda items: [ours_one(r) for r in items], ours_seq_rows)
    if score(bulk, ours_bulk) != score(bulk, [ours_one(r) for r in bulk]):
        print("WARNING: batch and single-call verdicts differ")

    pps_ours, pps_theirs = len(bulk) / t_ours, len(bulk) / t_theirs
    pps_seq = len(ours_seq_rows) / t_ours_seq
    for title, lo, hi in (
        ("suite " + args.cases.name, 0, n_main),
        ("recall suites (issue 22)", n_main, len(rows)),
    ):
        part = rows[lo:hi]
        s_ours, s_theirs = score(part, ours[lo:hi]), score(part, theirs[lo:hi])
        print()
        print(f"{title}: {len(part)} pairs")
        print(f"{'verifier':<24}{'accuracy':>9}{'false acc':>11}{'false rej':>11}")
        for name, sc in (("mathaug", s_ours), (f"math-verify {mv_version}", s_theirs)):
            print(
                f"{name:<24}{sc['acc']:>8.1%}{sc['fa']:>6} ({sc['fa'] / sc['n']:.1%})"
                f"{sc['fr']:>5} ({sc['fr'] / sc['n']:.1%})"
            )
    print()
    print(f"throughput on {args.cases.name} ({n_main} pairs x{args.repeat}, shuffled):")
    print(
        f"mathaug grade_many {pps_ours:.0f} pairs/s, single calls one thread {pps_seq:.0f} pairs/s, "
        f"math-verify {pps_theirs:.0f} pairs/s"
    )
    print(
        f"ratio mathaug / math-verify: throughput {pps_ours / pps_theirs:.1f}x (single-call {pps_seq / pps_theirs:.1f}x)"
    )
    if recall_rows:
        print(
            f"recall suites, single calls (one pass, sympy-heavy classes): mathaug "
            f"{len(recall_rows) / t_recall_ours:.0f} pairs/s, math-verify {len(recall_rows) / t_recall_theirs:.0f} "
            f"pairs/s ({t_recall_theirs / t_recall_ours:.1f}x)"
        )
    print(f"mathaug counters: {stats()}")

    print()
    before_head = f"{'before acc FA FR':>20}" if before is not None else ""
    print(f"{'category':<20}{'n':>5}{before_head}{'after acc FA FR':>20}{'math-verify':>13}")
    by_cat: dict[str, list[int]] = collections.defaultdict(list)
    for k, r in enumerate(rows):
        by_cat[("" if k < n_main else "recall:") + r["category"]].append(k)
    for cat, idx in sorted(by_cat.items(), key=lambda kv: (kv[0].startswith("recall:"), kv[0])):
        part = [rows[k] for k in idx]
        after = score(part, [ours[k] for k in idx])
        mv = score(part, [theirs[k] for k in idx])
        was = f"{_fa_fr(score(part, [before[k] for k in idx])):>20}" if before is not None else ""
        print(f"{cat:<20}{len(idx):>5}{was}{_fa_fr(after):>20}{mv['acc']:>13.1%}")
    if before is not None:
        for title, lo, hi in (("suite " + args.cases.name, 0, n_main), ("recall suites", n_main, len(rows))):
            b, a = score(rows[lo:hi], before[lo:hi]), score(rows[lo:hi], ours[lo:hi])
            print(
                f"{title}: before {_fa_fr(b).strip()} -> after {_fa_fr(a).strip()} (accuracy, false accepts, "
                f"false rejects; before = {args.baseline_rev[:12]})"
            )

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
