"""LLM-free FOBAR backward questions: exact by construction, rejections named, verify gate passed, determinism."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.build import verify_records
from pipeline.funnel import Funnel
from pipeline.paths import DATA_DIR
from pipeline.records import make_record
from pipeline.stages import StageContext, get_stage
from pipeline.stages.fobar import ASK, Params, mask_span, run, unknown_name
from pipeline.verify import extract_answer

NATALIA = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips "
    "did Natalia sell altogether in April and May?",
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April "
    "and May.\n#### 72",
)
# a rate: the masked number ends up in a denominator ("24 / x"), still one solution
PIZZA = (
    "A pizza costs $24 and is cut into 8 slices. Tom pays for 5 slices. How much does Tom pay?",
    "Each slice costs 24/8 = $<<24/8=3>>3.\nTom pays 3*5 = $<<3*5=15>>15.\n#### 15",
)
# the wide side enters twice (a product of x with 2x): x is not unique, so no row
RECTANGLE = (
    "A garden is 5 meters wide and twice as long as it is wide. What is its area in square meters?",
    "It is 5*2 = <<5*2=10>>10 meters long.\nIts area is 5*10 = <<5*10=50>>50 square meters.\n#### 50",
)
# the 7 cancels out (7 + 3 - 7): the answer does not depend on it
APPLES = (
    "Tom has 7 apples and picks 3 more. Then he eats as many apples as he had at first. How many apples are left?",
    "He has 7+3 = <<7+3=10>>10 apples.\nAfter eating he has 10-7 = <<10-7=3>>3 apples left.\n#### 3",
)


def seed(question: str, solution: str, i: int = 0) -> dict:
    return make_record(question=question, solution=solution, answer=solution.rsplit("#### ", 1)[1], method="seed",
                       source={"dataset": "gsm8k", "split": "train", "seed_id": f"t:{i}"},
                       verification={"status": "gold", "method": "gold"})


def backward_rows(*problems: tuple[str, str], **params: object) -> tuple[list[dict], Funnel, list]:
    funnel, dropped = Funnel(), []
    ctx = StageContext(stage="fobar", seed=0, funnel=funnel, on_reject=lambda c, r, d: dropped.append((r, c, d)))
    rows = run([seed(q, s, i) for i, (q, s) in enumerate(problems)], Params(**params), ctx)
    return rows, funnel, dropped


def test_natalia_backward_question_and_solution() -> None:
    rows, funnel, _ = backward_rows(NATALIA)
    assert len(rows) == 1 and funnel.get("fobar", "generated") == 1
    row = rows[0]
    assert row["question"] == NATALIA[0].replace("to 48 of", "to x of") + "\n" + ASK.format(answer="72", var="x")
    assert row["answer"] == "48" and row["method"] == "fobar" and row["verification"]["method"] == "recompute"
    assert row["solution"].endswith("The value of x is 48.\n#### 48")
    assert "x + (x / 2) = 3*x/2" in row["solution"] and "3*x/2 = 72" in row["solution"]
    assert extract_answer(row["solution"]) == "48"
    assert json.loads(row["method_params"])["masked"] == "48"


def test_every_number_masked_and_a_denominator_solved() -> None:
    rows, _, _ = backward_rows(PIZZA, questions_per_seed=3)
    by_masked = {json.loads(r["method_params"])["masked"]: r for r in rows}
    assert set(by_masked) == {"24", "8", "5"}
    assert "$x" in by_masked["24"]["question"] and by_masked["24"]["answer"] == "24"
    slices = by_masked["8"]["solution"]
    assert "Multiplying both sides by x" in slices and slices.endswith("#### 8")
    for row in rows:  # substitute the masked answer back: the seed question again
        assert _unmask(row["question"].split("\n")[0], row["answer"]) == _plain(PIZZA[0])


@pytest.mark.parametrize(
    ("problem", "reason"),
    [(RECTANGLE, "nonlinear_in_masked_number"), (APPLES, "answer_independent_of_masked_number")],
)
def test_masks_that_do_not_determine_x_are_rejected(problem: tuple[str, str], reason: str) -> None:
    rows, funnel, dropped = backward_rows(problem, questions_per_seed=5)
    reasons = funnel.reasons("fobar")
    assert reason in reasons
    for row in rows:  # whatever was kept is still exact: the other number determines x
        assert json.loads(row["method_params"])["masked"] != ("5" if problem is RECTANGLE else "7")
    dropped_question = next(c["question"] for r, c, _ in dropped if r == reason)
    assert "unknown variable x" in dropped_question


def test_symbolic_reasons_when_the_chain_cannot_be_linked() -> None:
    ambiguous = ("Ann has 3 red and 3 blue pens. How many pens?", "3+3 = <<3+3=6>>6\n#### 6")
    rows, funnel, _ = backward_rows(ambiguous, ("No chain here?", "It is 5.\n#### 5"))
    assert rows == []
    assert funnel.reasons("fobar") == {"ambiguous_equal_question_numbers": 1, "no_annotations": 1}


def test_unknown_letter_avoids_words_of_the_question() -> None:
    assert unknown_name("A 3 x 4 grid of tiles") == "y"
    assert unknown_name("Tom has 3 pens") == "x"
    assert mask_span("He works a 6 hour day", 11, 12, "x") == "He works an x hour day"


def test_shipped_sample_rows_pass_the_verify_gate_and_recompute() -> None:
    lines = (DATA_DIR / "seeds/gsm8k_train_sample.jsonl").read_text().splitlines()[:120]
    problems = [(r["question"], r["answer"]) for r in map(json.loads, lines)]
    rows, funnel, _ = backward_rows(*problems)
    assert len(rows) >= 30
    again, _, _ = backward_rows(*problems)
    assert [r["id"] for r in again] == [r["id"] for r in rows]  # deterministic
    kept = list(verify_records(rows, consistency=True, keep_failed=False, funnel=Funnel()))
    assert len(kept) == len(rows)
    seeds = {seed(q, s, i)["id"]: (q, s) for i, (q, s) in enumerate(problems)}
    for row in rows:  # independent check: x replaced by the answer gives back the seed question and its answer
        question, ask = row["question"].split("\n")
        original, solution = seeds[row["parent_ids"][0]]
        assert _unmask(question, row["answer"]) == _plain(original), (question, original)
        assert ask == ASK.format(answer=solution.rsplit("#### ", 1)[1].replace(",", ""), var="x")


def _unmask(question: str, value: str) -> str:
    return _plain(re.sub(r"(?<![\w'])x(?![\w'])", value, question))


def _plain(text: str) -> str:
    """Numbers without thousands commas, 'an' as 'a' (the mask fixes articles before x)."""
    return re.sub(r"\ban\b", "a", re.sub(r"(\d),(\d{3})", r"\1\2", text))


def test_registered_and_declared() -> None:
    stage = get_stage("fobar")
    assert stage.verifier == "recompute" and stage.roles == {}
