"""Quality gates bench (issue 13): false rejects on real data, and speed.

    python bench/quality_gates_bench.py [--data /work/shared/data] [--sample 1000] [--show 3]

(a) `solution_problems` on real reference solutions, which are all usable: GSM8K train (``<<a*b=c>>`` annotations
    removed, ``The final answer is \\boxed{gold}.`` appended) and the 4,500 MATH problems of PRM800K's train split
    that carry a solution with ``\\boxed{}`` (the shared copy of MATH train has none): a sample of `--sample` each
    (seed 0) and all of them. Every reason is a false reject, except that GSM8K holds a few known
    label errors (the gold contradicts the reference's own last line), which are listed so a reader can judge.
(b) `question_problems` on the real questions (GSM8K train, MATH train) as if each were a generated question
    (source=None, answer=gold: nothing should fire) and as if it were a rewrite of itself (source=itself,
    keeps_quantities=True: only near_copy should fire).
(c) speed: questions/s without and with a source (a distinct rewrite-like text per row, caches cleared), and
    solutions/s, single-threaded.

Prints a Markdown table for bench/RESULTS.md and the false rejects (up to `--show` per reason).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.quality import numbers, question_problems, solution_problems  # noqa: E402


def gsm8k_solution(reference: str) -> tuple[str, str]:
    """A GSM8K reference answer as a model-style solution: annotations removed, the gold boxed at the end."""
    body, gold = reference.split("####")
    body = re.sub(r"<<[^>]*>>", "", body).strip()
    return f"{body}\nThe final answer is \\boxed{{{gold.strip()}}}.", gold.strip()


def load(data: Path) -> tuple[list[dict], list[dict]]:
    gsm = [json.loads(line) for line in (data / "gsm8k" / "train.jsonl").open(encoding="utf-8")]
    with gzip.open(data / "math" / "train.jsonl.gz", "rt", encoding="utf-8") as fh:
        math_rows = list(map(json.loads, fh))
    gsm_rows = []
    for r in gsm:
        solution, gold = gsm8k_solution(r["answer"])
        gsm_rows.append({"question": r["question"], "solution": solution, "answer": gold})
    math_rows = [
        {"question": r["problem"], "solution": r["solution"], "answer": r["answer"]} for r in math_rows
    ]
    return gsm_rows, math_rows


def rejects(rows: Iterable[dict], gate: Callable[[dict], list[str]]) -> tuple[int, Counter, dict]:
    """(rows rejected, count per reason, examples per reason)."""
    rejected, per_reason, examples = 0, Counter(), defaultdict(list)
    for row in rows:
        reasons = gate(row)
        if reasons:
            rejected += 1
            for r in reasons:
                per_reason[r] += 1
                examples[r].append(row)
    return rejected, per_reason, examples


def rate(k: int, n: int) -> str:
    return f"{100 * k / n:.2f}% ({k:,} / {n:,})"


def reasons_text(per_reason: Counter) -> str:
    return ", ".join(f"{r} {n}" for r, n in per_reason.most_common()) or "—"


def per_second(rows: list, call: Callable) -> float:
    numbers.quantities.cache_clear()
    numbers.values_in.cache_clear()
    t = time.process_time()  # CPU time: the shared machine's load changes wall time far more than work done
    for row in rows:
        call(row)
    return len(rows) / (time.process_time() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--sample", type=int, default=1000)
    ap.add_argument("--show", type=int, default=3)
    args = ap.parse_args()
    gsm_rows, math_rows = load(args.data)
    rng = random.Random(0)
    table: list[tuple[str, str, str]] = []
    shown: list[tuple[str, dict]] = []

    def solution_gate(row: dict) -> list[str]:
        return solution_problems(row["solution"], question=row["question"])

    solved_math = [
        r for r in math_rows if r["solution"]
    ]  # the shared copy's MATH-train rows have no solution
    for name, rows in (("GSM8K train", gsm_rows), ("MATH (PRM800K train split)", solved_math)):
        for label, subset in ((f"{args.sample:,} sampled", rng.sample(rows, args.sample)), ("all", rows)):
            k, per_reason, examples = rejects(subset, solution_gate)
            table.append((f"solution gates, {name} reference solutions ({label})", rate(k, len(subset)),
                          reasons_text(per_reason)))  # fmt: skip
            if label == "all":
                shown += [(f"{name} solution: {r}", e) for r, ex in examples.items() for e in ex[: args.show]]
        # as if the model had been shown the answer (a cot_length rewrite): only answer_not_derived is new
        k, per_reason, examples = rejects(rows, lambda r: [x for x in solution_problems(
            r["solution"], question=r["question"], answer_shown=True) if x == "answer_not_derived"])
        table.append((f"answer_not_derived on {name} reference solutions (all), as if the answer was shown",
                      rate(k, len(rows)), reasons_text(per_reason)))  # fmt: skip
        shown += [(f"{name} solution, answer shown: {r}", e) for r, ex in examples.items() for e in ex[: args.show]]

    def generated(row: dict) -> list[str]:
        return question_problems(row["question"], answer=row["answer"])

    def self_rewrite(row: dict) -> list[str]:
        found = question_problems(
            row["question"], source=row["question"], answer=row["answer"], keeps_quantities=True
        )
        return [r for r in found if r != "near_copy"]

    for name, rows in (("GSM8K train", gsm_rows), ("MATH train (PRM800K split)", math_rows)):
        k, per_reason, examples = rejects(rows, generated)
        table.append(
            (f"question gates, {name} questions, source=None", rate(k, len(rows)), reasons_text(per_reason))
        )
        shown += [
            (f"{name} question (source=None): {r}", e) for r, ex in examples.items() for e in ex[: args.show]
        ]
        k, per_reason, examples = rejects(rows, self_rewrite)
        table.append((f"question gates, {name} questions as a rewrite of themselves, near_copy aside",
                      rate(k, len(rows)), reasons_text(per_reason)))  # fmt: skip
        copies = sum("near_copy" in question_problems(r["question"], source=r["question"]) for r in rows)
        table.append(
            (f"near_copy fires on {name} self-comparison", rate(copies, len(rows)), "should be 100%")
        )

    questions = gsm_rows + math_rows
    speed_no_source = per_second(questions, lambda r: question_problems(r["question"], answer=r["answer"]))
    speed_source = per_second(
        questions,
        lambda r: question_problems(
            "As a nurse on a night shift, " + r["question"], source=r["question"], answer=r["answer"],
            keeps_quantities=True,
        ),
    )  # fmt: skip
    solved = gsm_rows + solved_math
    speed_solutions = per_second(solved, lambda r: solution_problems(r["solution"], question=r["question"]))
    table.append(("speed, question gates (no source / with source + keeps_quantities)",
                  f"{speed_no_source:,.0f} / {speed_source:,.0f} questions/s", "one core (CPU time), caches cleared"))  # fmt: skip
    table.append(("speed, solution gates", f"{speed_solutions:,.0f} solutions/s", "one core (CPU time)"))

    print("| figure | false rejects | by reason |\n| --- | --- | --- |")
    for row in table:
        print("| " + " | ".join(row) + " |")
    print()
    for label, row in shown:
        text = row.get("solution") if "solution:" in label else row["question"]
        print(f"- {label} (gold {row['answer']}): {text[-400:]!r}")


if __name__ == "__main__":
    main()
