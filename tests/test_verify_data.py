"""The verifier on real data: every MATH gold matches itself and reformatted versions; GSM8K `#### N`;
and the labelled suite in bench/data/verify_cases.jsonl meets the accuracy bar (math-verify not needed)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from pipeline.verify import answers_match, extract_answer, grade, grade_many
from pipeline.verify.parse import ParseError, parse_answer

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path("/work/shared/data")
MATH500 = SHARED / "math" / "test.jsonl"
MATH_TRAIN = SHARED / "math" / "train.jsonl.gz"
GSM8K_TEST = SHARED / "gsm8k" / "test.jsonl"
CASES = ROOT / "bench" / "data" / "verify_cases.jsonl"

needs_math = pytest.mark.skipif(not MATH500.exists(), reason="MATH500 not available (/work/shared)")


def math500_golds() -> list[str]:
    return [json.loads(line)["answer"] for line in MATH500.read_text().splitlines() if line.strip()]


def reformat(gold: str) -> str:
    """A differently written but equivalent answer: other fraction macro, spacing, delimiters, \\left/\\right."""
    s = gold.replace("\\dfrac", "\\frac").replace("\\frac", "\\dfrac")
    s = re.sub(r"(?<!{)\s*,\s*(?!\\!|})", ", ", s)  # not inside thousands separators `,\\!` / `{,}`
    s = re.sub(r"(?<=[^\s{(\[])([+=])(?=[^\s}])", r" \1 ", s)
    s = re.sub(r"(?<!\\left)\((?=[^)]*,)", r"\\left(", s)
    s = re.sub(r"\^\\circ", "°", s)
    return f"$ {s} $"


@needs_math
def test_every_math500_gold_matches_itself_and_a_reformatted_self() -> None:
    golds = math500_golds()
    assert len(golds) == 500
    bad = [g for g in golds if not answers_match(g, g)]
    assert bad == []
    bad = [(g, reformat(g)) for g in golds if not answers_match(reformat(g), g)]
    assert bad == []
    boxed = [f"Thus the answer is $\\boxed{{{g}}}$." for g in golds]
    verdicts = grade_many(boxed, golds)
    assert [v.reason for v in verdicts if not v.correct] == []


def without_boxes(solution: str) -> str:
    """A MATH solution with each `\\boxed{X}` replaced by X: the worked text with no commitment left in it."""
    out, i = [], 0
    while (j := solution.find("\\boxed{", i)) >= 0:
        depth, k = 0, j + 6
        while k < len(solution):
            depth += {"{": 1, "}": -1}.get(solution[k], 0)
            if depth == 0:
                break
            k += 1
        out += [solution[i:j], solution[j + 7 : k]]
        i = k + 1
    return "".join(out) + solution[i:]


PROSE_ENDINGS = [
    "{work}\n\nAnswer ${a}$",
    "{work} So ${a}$ is the answer.",
    "{work}\nFinal Answer: The final answer is ${a}$. I hope it is correct.",
]
NOT_COMMITTED_TO_A = [
    "{work} So ${a}$ is the answer. Wait, I made an arithmetic error, so the answer is ${b}$.",
    "{work} Is ${a}$ the answer? Checking shows it is not. So ${b}$ is the answer.",
    "{work} Thus $\\boxed{{{b}}}$. Note that $\\boxed{{{a}}}$ would be the answer if the order mattered.",
    "{work} The answer could be ${a}$ or ${b}$.",
]


@needs_math
def test_math500_solutions_ending_in_prose_grade_correct_and_revisions_do_not() -> None:
    rows = [json.loads(line) for line in MATH500.read_text().splitlines() if line.strip()]
    golds = [r["answer"] for r in rows]
    misses, false_accepts = [], []
    for k, row in enumerate(rows[::2]):
        work, a = without_boxes(row["solution"]), row["answer"]
        for ending in PROSE_ENDINGS:
            if not grade(ending.format(work=work, a=a), a).correct:
                misses.append((k, ending[:20]))
        b = golds[(7 * k + 3) % len(golds)]
        if answers_match(a, b) or answers_match(b, a):
            continue
        for ending in NOT_COMMITTED_TO_A:
            if grade(ending.format(work=work, a=a, b=b), a).correct:
                false_accepts.append((k, ending[7:40]))
    assert false_accepts == []
    assert misses == []


@needs_math
def test_math500_golds_parse_or_are_text() -> None:
    unparsed = []
    for gold in math500_golds():
        try:
            parse_answer(gold)
        except ParseError:
            unparsed.append(gold)
    # Only ratios / clock times fall back to text comparison.
    assert all(re.search(r"\d\s*:\s*\d", g) for g in unparsed), unparsed


@needs_math
def test_math_train_golds_are_reflexive() -> None:
    with gzip.open(MATH_TRAIN, "rt") as f:
        golds = sorted({json.loads(line)["answer"] for line in f if line.strip()} - {None, ""})
    assert len(golds) > 3000
    bad = [g for g in golds if not answers_match(reformat(g), g)]
    assert len(bad) <= len(golds) // 500, bad[:20]


@pytest.mark.skipif(not GSM8K_TEST.exists(), reason="GSM8K not available (/work/shared)")
def test_gsm8k_reference_solutions_grade_correct() -> None:
    rows = [json.loads(line) for line in GSM8K_TEST.read_text().splitlines() if line.strip()]
    for row in rows[:300]:
        gold = row["answer"].split("####")[-1].strip()
        assert extract_answer(row["answer"]) == gold
        assert grade(row["answer"], gold.replace(",", "")).correct
        wrong = str(int(gold.replace(",", "")) + 1)
        assert not grade(row["answer"], wrong).correct


def test_labelled_suite_meets_the_bar() -> None:
    rows = [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]
    assert len(rows) >= 400
    answers = [r for r in rows if r["kind"] == "answer"]
    outputs = [r for r in rows if r["kind"] == "output"]
    preds = {
        id(r): v.correct
        for r, v in zip(
            answers,
            grade_many([r["given"] for r in answers], [r["gold"] for r in answers], extract=False),
            strict=True,
        )
    }
    preds.update(
        {
            id(r): v.correct
            for r, v in zip(
                outputs, grade_many([r["given"] for r in outputs], [r["gold"] for r in outputs]), strict=True
            )
        }
    )
    false_accepts = [r["id"] for r in rows if preds[id(r)] and not r["label"]]
    false_rejects = [r["id"] for r in rows if not preds[id(r)] and r["label"]]
    accuracy = 1 - (len(false_accepts) + len(false_rejects)) / len(rows)
    assert accuracy >= 0.98, (false_accepts, false_rejects)
    assert len(false_accepts) <= 0.005 * len(rows), false_accepts
