"""Quality gates (issue 13): the corpus of real and hand-written generations, then each rule on its own.

Corpus rows live in tests/data/quality/*.jsonl: bad rows name the main reason (`reason`, first in the list) and
any others the same text also earns (`also`); good rows must pass every gate.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from pipeline.quality import (
    QUESTION_REASONS,
    SOLUTION_REASONS,
    agreement,
    number_value,
    numbers_in,
    quantities,
    question_problems,
    solution_problems,
    values_in,
    votes,
)
from pipeline.verify import extract_answer

DATA = Path(__file__).parent / "data" / "quality"


def _rows(name: str) -> list[dict]:
    return [
        json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def _question(row: dict) -> list[str]:
    return question_problems(
        row["question"],
        source=row.get("source"),
        answer=row.get("answer"),
        keeps_quantities=row.get("keeps_quantities", False),
    )


def _solution(row: dict) -> list[str]:
    return solution_problems(row["solution"], question=row.get("question"), prompt=row.get("prompt"),
                             answer_shown=row.get("answer_shown", False))


# ------------------------------------------------------------------------------------------------ the corpus


def _expected(row: dict, order: tuple[str, ...]) -> list[str]:
    """[] for a good row; the main reason first, then the others in the gate's order, for a bad one."""
    if "reason" not in row:
        return []
    assert row["reason"] in order
    return [row["reason"], *sorted(row["also"], key=order.index)]


CORPUS = [
    (name, row)
    for name in ("bad_questions.jsonl", "good_questions.jsonl", "bad_solutions.jsonl", "good_solutions.jsonl")
    for row in _rows(name)
]


@pytest.mark.parametrize(("name", "row"), CORPUS, ids=[f"{n.split('.')[0]}:{r['id']}" for n, r in CORPUS])
def test_corpus_row_gets_its_expected_reasons(name, row):
    if name.endswith("questions.jsonl"):
        assert _question(row) == _expected(row, QUESTION_REASONS)
    else:
        assert _solution(row) == _expected(row, SOLUTION_REASONS)


def test_corpus_holds_real_model_generations():
    real = [
        r
        for name in ("bad_questions.jsonl", "bad_solutions.jsonl")
        for r in _rows(name)
        if "real model" in r["origin"]
    ]
    assert len(real) >= 5


def test_corpus_covers_every_reason():
    bad_q = {r["reason"] for r in _rows("bad_questions.jsonl")}
    bad_s = {r["reason"] for r in _rows("bad_solutions.jsonl")}
    assert bad_q == set(QUESTION_REASONS)
    assert bad_s == set(SOLUTION_REASONS)
    assert len(_rows("good_questions.jsonl")) >= 40 and len(_rows("good_solutions.jsonl")) >= 40


# ------------------------------------------------------------------------------------------------ numbers


def test_numbers_in_keeps_the_persona_digit_behaviour():
    assert numbers_in("Pay $1,200 for 3.5 kg and 12 more") == {"1200", "3.5", "12"}


def test_numbers_in_reads_number_words():
    text = "three years younger, twice as many, half of them, a dozen eggs, one third of the cake, forty-two"
    assert numbers_in(text) == {"3", "2", "1/2", "12", "1/3", "42"}
    assert numbers_in(text, words=False) == set()


def test_one_is_not_a_quantity_a_rewrite_must_keep():
    assert numbers_in("one of her friends came 1 day late") == {"1"}  # the digit, as persona always did
    assert not any(q.required for q in quantities("one of her friends came 1 day late"))


@pytest.mark.parametrize(
    ("text", "value", "also"),
    [
        ("two dozen", 24, {2, 12}),
        ("half a dozen", 6, {Fraction(1, 2), 12}),
        ("one and a half", Fraction(3, 2), {1, Fraction(1, 2)}),
        ("two-thirds", Fraction(2, 3), set()),
        ("three hundred and twelve", 312, set()),
        ("twenty-five percent", 25, {Fraction(1, 4)}),
        ("50%", 50, {Fraction(1, 2)}),
        ("3/4", Fraction(3, 4), set()),
        ("a quarter", Fraction(1, 4), {25}),
    ],
)
def test_quantity_values(text, value, also):
    (q,) = quantities(text)
    assert q.value == value and q.values == {value} | also


def test_ordinals_and_names_are_not_quantities():
    assert quantities("the third day, x2 and a_1") == ()
    assert [q.value for q in quantities("five six dogs")] == [5, 6]  # two numbers, not eleven


def test_values_in_offers_the_parts_of_a_fraction():
    assert {3, 4, Fraction(3, 4)} <= values_in("3/4 of the cake")


@pytest.mark.parametrize(
    ("answer", "value"),
    [("$1,200", 1200), ("\\frac{3}{5}", Fraction(3, 5)), ("25\\%", Fraction(1, 4)), ("35 years", 35),
     ("\\$5.00", 5), ("-3", -3), ("x+1", None), ("88 \\text{ rabbits and } 44 \\text{ weasels}", None)],
)  # fmt: skip
def test_number_value(answer, value):
    assert number_value(answer) == value


# ------------------------------------------------------------------------------------------------ question rules

SOURCE = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
REWRITE = (
    "A pharmacist filled prescriptions for 48 patients in April, and then she filled half as many "
    "prescriptions in May. How many prescriptions did the pharmacist fill altogether in April and May?"
)


def test_good_rewrite_passes_every_question_gate():
    assert question_problems(REWRITE, source=SOURCE, answer="72", keeps_quantities=True) == []


def test_length_bounds():
    assert question_problems("How many?") == ["too_short"]
    assert question_problems(REWRITE, max_chars=50) == ["too_long"]
    assert question_problems(REWRITE, min_chars=len(REWRITE) + 1) == ["too_short"]


def test_an_imperative_asks_too():
    assert question_problems("Compute the number of ways to choose 3 of 8 sauces.") == []
    assert question_problems("Given $x + y = 10$ and $x - y = 2$, find $xy$.") == []
    assert question_problems("A pharmacist filled 48 prescriptions in April.") == ["not_a_question"]


def test_a_relative_when_is_not_a_question():
    text = "Their first child was born 15 years ago, when Jolene was 20. Their second child was born a year later."
    assert question_problems(text) == ["not_a_question"]


def test_an_equation_chain_is_a_worked_solution_unless_the_source_has_it():
    chain = REWRITE + " She filled 48 + 24 = 72 prescriptions."
    assert question_problems(chain)[0] == "contains_solution"
    assert "contains_solution" not in question_problems(chain, source=chain)
    example = (
        "For example, $5! = 5 \\cdot 4 \\cdot 3 \\cdot 2 \\cdot 1 = 120$. How many zeros does $100!$ end in?"
    )
    assert question_problems(example) == []


def test_an_equation_to_solve_is_not_a_solution():
    assert question_problems("Solve for $r$ in the equation $19 - 3 = 2 + r$.") == []


def test_a_derived_value_after_which_means_is_a_solution():
    text = "Tom was born 15 years ago, which means Tom is currently 15 years old. How old is his sister?"
    assert question_problems(text, source="Tom was born 15 years ago. How old is his sister?") == []
    derived = (
        "Tom was born when his mother was 20, which means she is currently 35 years old. How old is Tom?"
    )
    assert question_problems(derived, source="Tom was born when his mother was 20. How old is Tom?") == [
        "contains_solution"
    ]
    comparative = "Happy Island has 60 turtles. This means there are 10 more than 2 times as many as on Lonely Island. How many are on Lonely Island?"
    assert question_problems(comparative) == []


def test_a_stated_answer_leaks_unless_the_source_stated_it():
    leaked = REWRITE.replace("in May.", "in May, which is 72 in total.")
    assert "leaks_answer" in question_problems(leaked, source=SOURCE, answer="72")
    assert "leaks_answer" not in question_problems(leaked, source=leaked, answer="72")
    given = "A crate holds 24 apples and a box holds 2. Ann fills 12 boxes. How many apples is that?"
    assert question_problems(given, answer="24") == []  # no source: a given number is not a leak
    assert question_problems(given + " The answer is 24.", answer="24")[0] == "contains_solution"


def test_meta_text_about_the_task():
    for text in (
        "Here is the rewritten problem: " + REWRITE,
        "Rewritten problem:\n" + REWRITE,
        REWRITE + "\n\nNote: I kept all the numbers from the original problem.",
        "Sure! " + REWRITE,
        REWRITE + " In this rewritten version, the persona is a pharmacist.",
    ):
        assert question_problems(text, source=SOURCE) == ["meta_text"], text
    note = REWRITE + " (Note: two prescriptions are the same if they have the same drug.)"
    assert question_problems(note) == []


def test_lost_quantities_only_when_the_method_keeps_them():
    dropped = REWRITE.replace("half as many", "more")
    assert question_problems(dropped, source=SOURCE, keeps_quantities=True) == ["lost_quantities"]
    assert question_problems(dropped, source=SOURCE) == []


def test_a_quantity_may_change_spelling():
    in_digits = REWRITE.replace("half as many", "1/2 as many")
    assert question_problems(in_digits, source=SOURCE, keeps_quantities=True) == []
    source = "Mel is three years younger than Katherine. When Katherine is two dozen years old, how old will Mel be?"
    rewrite = "Mel, a junior architect, is 3 years younger than her boss Katherine. When Katherine is 24, how old will Mel be?"
    assert question_problems(rewrite, source=source, keeps_quantities=True) == []


def test_near_copy_threshold():
    one_word = SOURCE.replace("altogether", "in total")
    assert question_problems(one_word, source=SOURCE) == ["near_copy"]
    assert question_problems(one_word, source=SOURCE, near_copy=0.95) == []
    assert question_problems(SOURCE, source=SOURCE) == ["near_copy"]
    prepended = "A nurse hands out flyers at the clinic. " + SOURCE
    assert question_problems(prepended, source=SOURCE) == ["near_copy"]


def test_question_type_is_checked():
    with pytest.raises(TypeError):
        question_problems(None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ solution rules


def test_no_answer():
    assert solution_problems("She sold 48 + 24 = 72 clips altogether in April and May.") == ["no_answer"]


def test_a_final_answer_given_by_the_caller_is_not_extracted_again():
    for row in _rows("bad_solutions.jsonl"):
        final = extract_answer(row["solution"])
        if final is not None:
            assert solution_problems(
                row["solution"], question=row["question"], prompt=row.get("prompt"), final_answer=final,
                answer_shown=row.get("answer_shown", False),
            ) == _solution(row)
    text = "Large: 2 × 16 = 32. Small: 2 × 8 = 16. Total: 32 + 16 = 48.\n\nThe final answer is \\boxed{48}."
    assert solution_problems(text, final_answer="40") == ["answer_contradicts_work"]


def test_a_model_shown_the_answer_must_reach_it():
    pasted = "Divide the total gold by the 8 hours.\n\nTherefore, Jim finds \\boxed{25} gold per hour."
    assert solution_problems(pasted, answer_shown=True) == ["answer_not_derived"]
    assert solution_problems(pasted) == []  # not shown the answer: nothing to copy
    listed = "1. Add the pencils.\n2. Multiply by the price.\n3. Convert to dollars.\n\nSolution: \\boxed{2}"
    assert solution_problems(listed, answer_shown=True) == ["answer_not_derived"]  # "2." is a list marker
    for derived in (
        "10 pencils cost 20 * 10 = 200 cents, that is 2 dollars.\nThe final answer is \\boxed{2}.",
        "Expanding gives $16 + k = 144$, so $k = \\boxed{128}$.",
        "The four smallest even numbers are 2, 4, 6 and 8, and their average is $\\boxed{5}$.",
        "There are 3 + 2 = 5 marbles and 3 are red, so the probability is 3/5.\nThe final answer is \\boxed{\\frac{3}{5}}.",
    ):
        assert solution_problems(derived, answer_shown=True) == [], derived


def test_a_revision_is_one_answer():
    text = "48 + 24 = \\boxed{62}.\nWait, I made an addition mistake: 48 + 24 = 72.\nThe final answer is \\boxed{72}."
    assert solution_problems(text) == []


def test_two_committed_answers():
    text = "48 + 24 = 72 clips, so she sold \\boxed{72} clips.\nThe correct final answer is \\boxed{70}."
    assert solution_problems(text) == ["several_answers"]
    same = "48 + 24 = 72 clips, so she sold \\boxed{72} clips.\nThe final answer is \\boxed{72.0}."
    assert solution_problems(same) == []


def test_a_box_the_working_contradicts():
    text = "The number of orders is 3 × 2 × 1 = 6.\n\nThe final answer is \\boxed{\\frac{3}{5}}."
    assert solution_problems(text) == ["answer_contradicts_work"]


def test_a_closing_restatement_is_the_working_s_result():
    text = "Half of 560 is 560 / 2 = 280.\nSo each neighbor receives 280 mangoes.\n\nThe final answer is \\boxed{35}."
    assert solution_problems(text) == ["answer_contradicts_work"]
    given = (
        "So he has 20 - 5 = 15 apples. He then gives 3 of them to Ann.\n\nThe final answer is \\boxed{12}."
    )
    assert solution_problems(given) == []


def test_what_is_not_a_contradiction():
    rounding = "We need 250 / 40 = 6.25 buses; we round up.\n\nThe final answer is \\boxed{7}."
    percent = "The share is 20 / 80 = 0.25.\n\nThe final answer is \\boxed{25\\%}."
    later_step = (
        "So he has 20 - 5 = 15 apples. He then gives 3 of them to Ann.\n\nThe final answer is \\boxed{12}."
    )
    inline = "So $a = 3$ and $b = 8$, and $10a + b = \\boxed{38}$."
    combined = "So $a = 3$ and $b = 8,$ and the final answer is $\\boxed{38}.$"
    premise = (
        "There are 30 * 2 = 60 people in total, since there are 2 teams.\nThe final answer is \\boxed{60}."
    )
    both = "The fourth child is 10 - 2 = 8 years old, and Jolene is 35 years old.\nThe final answer is \\boxed{8}."
    fronted = (
        "Since he shared 300 tickets, he got 11/15 * 300 = 220 tickets.\nThe final answer is \\boxed{220}."
    )
    for text in (rounding, percent, later_step, inline, combined, premise, both, fronted):
        assert solution_problems(text) == [], text


def test_empty_reasoning():
    assert solution_problems("The final answer is \\boxed{148}.") == ["empty_reasoning"]
    assert solution_problems("$2^5 - 5^2 = 32 - 25 = \\boxed{7}$.") == []
    assert solution_problems("\\boxed{148}", min_reasoning_chars=0) == []


def test_echo_of_the_question():
    question = (
        "Alexis went to a department store with a budget of $200 and spent $30 on a shirt, $46 on pants, $38 on "
        "a coat, $11 on socks, and $18 on a belt. She has $16 left. How much did she pay for the shoes?"
    )
    assert solution_problems(question + " \\boxed{41}", question=question) == ["echoes_prompt"]
    restated = (
        question + "\nShe spent 30 + 46 + 38 + 11 + 18 = 143 dollars, and 200 - 143 - 16 = 41.\n\\boxed{41}"
    )
    assert solution_problems(restated, question=question) == []


# ------------------------------------------------------------------------------------------------ votes


def test_votes_count_what_was_asked():
    assert votes(["72"], "72", asked=3) == (3, 1, 1)
    assert votes(["72", None, "72.0"], "72", asked=3) == (3, 3, 2)
    with pytest.raises(ValueError):
        votes(["1", "2"], "1", asked=1)


def test_agreement_is_a_share_of_the_samples_asked():
    assert agreement(["72"], asked=3, min_agree=0.5) is None  # one of three, not one of one
    assert agreement(["72", "72"], asked=3, min_agree=0.5) == "72"
    assert agreement(["72"], asked=1, min_agree=0.5) == "72"
    assert agreement(["72", None, None], asked=3, min_agree=1) == "72"
