"""GSM-Symbolic variants: every variant's chain recomputes to its new answer; ambiguity is rejected, not guessed."""

from __future__ import annotations

import json
import random
import re
from fractions import Fraction

import pytest

from pipeline.funnel import Funnel
from pipeline.io.seeds import SeedSpec, load_seeds
from pipeline.paths import DATA_DIR
from pipeline.stages import StageContext
from pipeline.stages.symbolic import (
    ANNOTATION,
    Params,
    TemplateError,
    build_template,
    evaluate,
    expr_literals,
    format_number,
    make_variant,
    run,
)

NATALIA_Q = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
NATALIA_S = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
)


def independent_answer(solution: str) -> Fraction:
    """Recompute the trace from scratch with Python's own arithmetic (not the stage's evaluator)."""
    last = None
    for ann in ANNOTATION.finditer(solution):
        expr = ann.group(1).replace("x", "*")
        value = Fraction(eval(re.sub(r"(\d+(?:\.\d+)?|\.\d+)", r"Fraction('\1')", expr)))  # noqa: S307
        assert value == Fraction(ann.group(2).replace(",", "")), ann.group(0)
        last = value
    final = Fraction(re.search(r"#### (.+)", solution).group(1).replace(",", ""))
    assert final == last
    return final


def test_natalia_variant_is_consistent():
    template = build_template(NATALIA_Q, NATALIA_S)
    question, solution, answer = make_variant(template, random.Random(0), Params())
    new_n = int(re.search(r"clips to (\d+)", question).group(1))
    assert new_n != 48 and 10 <= new_n <= 99 and new_n % 2 == 0  # same magnitude; "half" leaves no remainder
    assert Fraction(answer) == new_n + new_n / 2 == independent_answer(solution)
    assert f"{new_n}/2" in solution  # the prose arithmetic was rewritten too, not just the annotation


def test_percent_and_money_formats():
    q = "A shirt costs $1,200. It is on sale for 25% off. What is the sale price?"
    s = "The discount is 1,200*.25 = $<<1200*.25=300>>300.\nThe price is 1,200-300 = $<<1200-300=900>>900.\n#### 900"
    template = build_template(q, s)
    rng = random.Random(3)
    for _ in range(5):
        question, solution, answer = make_variant(template, rng, Params())
        price = Fraction(re.search(r"\$([\d,]+)", question).group(1).replace(",", ""))
        pct = Fraction(re.search(r"(\d+)% off", question).group(1))
        assert Fraction(answer) == price - price * pct / 100 == independent_answer(solution)


@pytest.mark.parametrize(
    "question, solution, reason",
    [
        ("Tom has 5 apples.", "He has 5 apples.\n#### 5", "no_annotations"),
        # 2 could be the "every other day" constant or the 2 gallons: ambiguous
        ("John showers every other day for 4 weeks using 2 gallons a day. How much water?",
         "4*7=<<4*7=28>>28 days\n28/2=<<28/2=14>>14 showers\n14*2=<<14*2=28>>28\n#### 28", "number_word_collision"),
        # 0.3 comes from nowhere in the question
        ("Ann has 50 dollars. How much tax?", "50*0.37=<<50*0.37=18.5>>18.5\n#### 18.5", "unexplained_constant"),
        ("Ann has 50 dollars and 4 cats. How much?", "50/4=<<50/4=12>>12\n#### 12", "chain_does_not_recompute"),
        ("Ann has 7 pens and 3 bags. How many?", "7+3=<<7+3=10>>10\n#### 11", "answer_not_last_step"),
    ],
)
def test_rejections_are_named(question, solution, reason):
    with pytest.raises(TemplateError) as exc:
        build_template(question, solution)
    assert exc.value.reason == reason


def test_format_number_keeps_style():
    assert format_number(Fraction(1234), like="1,000") == "1,234"
    assert format_number(Fraction(1, 4), like=".5") == ".25"
    assert format_number(Fraction(3, 2), like=".5") == "1.5"
    assert format_number(Fraction(5, 2), like="1.25") == "2.50"
    assert format_number(Fraction(1, 3)) is None


def test_evaluate_is_exact():
    expr = "1/3*3"
    assert evaluate(expr, [lit.value for lit in expr_literals(expr)]) == 1


def test_stage_on_shipped_sample_every_variant_recomputes():
    seeds = load_seeds(SeedSpec(format="gsm8k", path=str(DATA_DIR / "seeds/gsm8k_train_sample.jsonl")))[:150]
    funnel = Funnel()
    ctx = StageContext(stage="symbolic", seed=7, funnel=funnel)
    out = run(seeds, Params(variants_per_seed=2), ctx)
    assert len(out) > 100
    parents = {s["id"]: s for s in seeds}
    for rec in out:
        assert Fraction(rec["answer"]) == independent_answer(rec["solution"])
        parent = parents[rec["parent_ids"][0]]
        assert rec["question"] != parent["question"]
        # only numbers changed: the words are the parent's
        assert re.sub(r"[\d,.]+", "#", rec["question"]) == re.sub(r"[\d,.]+", "#", parent["question"])
        assert rec["verification"]["status"] == "verified"
        assert json.loads(rec["method_params"])["variants_per_seed"] == 2
    assert funnel.get("symbolic", "generated") == len(out)
    assert funnel.get("symbolic", "rejected") == sum(funnel.reasons("symbolic").values()) > 0
    # deterministic: same seed, same variants
    again = run(seeds, Params(variants_per_seed=2), StageContext(stage="symbolic", seed=7))
    assert [r["id"] for r in again] == [r["id"] for r in out]
