"""Issue 22 (recall) class by class: answers the verifier used to reject, each with the near misses that must
stay rejected; and the per-class case sets in bench/data/verify_recall_*.jsonl at 0 false accepts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipeline.verify import answers_match, extract_answer, grade, match_reason, stats, warm_up

ROOT = Path(__file__).resolve().parents[1]
RECALL_SUITES = sorted((ROOT / "bench" / "data").glob("verify_recall_*.jsonl"))
T, F = True, False


def check(given: str, gold: str, expected: bool) -> None:
    assert answers_match(given, gold) is expected, (given, gold, match_reason(given, gold))


# ---------------------------------------------------------------------------------------------- 1. prose
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The divisors number $(2+1)(2+1) = 9$.\n\nAnswer $9$", "9"),
        ("Six boxes of seven: 6 * 7 = 42.\nAnswer 42", "42"),
        ("Adding the two cases gives $2 + 3 = 5$ arrangements. So $5$ is the answer.", "5"),
        ("Dividing by $-3$ flips the sign. Thus $x \\le 2$ is our answer.", "x \\le 2"),
        ("The smallest such $n$ is $12$, which is the answer.", "12"),
        ("Hence $5$ is indeed the answer.", "5"),
        ("Both factors are positive. The answer, therefore, is $12$.", "12"),
        (
            "The final answer is the number of ways the 5 books could be arranged on the shelf so that no two "
            "math books are adjacent, which is 19.",
            "19",
        ),
        ("So, the answer to the question is 5.", "5"),
        ("We count the remaining cases.\n\nAnswer\n$7$", "7"),
        ("Solving gives $x = 6$. So 6 is the answer.", "6"),
        (
            "Final Answer: The final answer is The greatest number of points that a single team could have been "
            "awarded is 19. I hope it is correct.",
            "19",
        ),
    ],
)
def test_answers_committed_in_prose_are_extracted(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Suppose $5$ is the answer; then the total would be 20, which is too many.",
        "If $x \\le 2$ is the answer, the endpoint must satisfy the original inequality.",
        "So is $5$ the answer? Not quite: the last case was skipped.",
        "The answer could be 19 or 20.",
        "The answer is 19, but it could be 20.",
        "I think the answer might be 19, but I am not sure.",
    ],
)
def test_prose_without_a_commitment_or_with_a_hedge_gives_none(text: str) -> None:
    assert extract_answer(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "So the answer is $12$. The answer could be $13$ or $12$, depending on the reading.",
        "So the answer is $\\boxed{12}$. I am not sure about the second case, though.",
        "So $\\boxed{4}$. It is either 4 or 5.",
    ],
)
def test_doubt_after_the_answer_withdraws_it(text: str) -> None:
    assert extract_answer(text) is None


def test_either_without_an_alternative_is_no_hedge() -> None:
    text = "That leaves $35-20=\\boxed{15}$ who didn't get an A in either."
    assert extract_answer(text) == "15"


def test_a_counterfactual_answer_is_not_a_commitment() -> None:
    text = "So the count is $\\boxed{6}$. The answer would be 12 if the order mattered."
    assert extract_answer(text) == "6"


def test_a_revision_in_prose_still_wins() -> None:
    text = "So $5$ is the answer. Wait, I forgot the arrangements with repeats, so the answer is 7."
    assert extract_answer(text) == "7"
    assert not grade(text, "5").correct


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("Jane started growing her tree 3 hours ago", "3", T),
        ("Jane started growing her tree three hours ago", "3", T),
        ("The area is 15 square units", "15", T),
        ("Jane started growing her tree 4 hours ago", "3", F),
        ("Jane started growing her tree 3 hours after Tom, who started 5 hours ago", "3", F),
        ("Jane did not start growing her tree 3 hours ago", "3", F),
        ("At least 5 students", "5", F),
        ("more than 5", "5", F),
        ("Either 3 or 4 hours", "3", F),
    ],
)
def test_a_sentence_answer_yields_its_one_quantity_against_a_numeric_gold(
    given: str, gold: str, expected: bool
) -> None:
    check(given, gold, expected)


# ---------------------------------------------------------------------------------------------- 2. several boxes
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"So the solutions are $\boxed{(2, 2)} \quad\text{and}\quad \boxed{(6, 2)}$.", "(2, 2), (6, 2)"),
        (r"$$\boxed{(2, 2)} \qquad \boxed{(6, 2)}$$", "(2, 2), (6, 2)"),
        (
            "**(a)** The sum is $\\boxed{12}$.\n\n**(b)** The product is $\\boxed{\\frac{1}{4}}$.",
            "12, \\frac{1}{4}",
        ),
        ("Part (a): $\\boxed{7}$.\nPart (b): the median is $\\boxed{6.5}$.", "7, 6.5"),
        (r"The answers are $\boxed{5}$ (for part a) and $\boxed{7}$ (for part b).", "5, 7"),
        (
            "For part (a), the count is $\\boxed{20}$.\n\nFor part (b), a first count gives $\\boxed{15}$, "
            "but the corners were missed, so the count is $\\boxed{16}$.",
            "20, 16",
        ),
        (r"So $f(2) = \boxed{5}$ and $f(3) = \boxed{7}$.", "5, 7"),
        (r"The sides are $\boxed{12}\text{ cm}$ and $\boxed{15}\text{ cm}$.", "12, 15"),
    ],
)
def test_a_final_conjunction_of_boxes_is_one_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # an aside box after the answer is not joined to it, and is not the answer either
        (r"The solutions are $\boxed{(2,2)}$. Note that $\boxed{(6,2)}$ fails because $6 > 5$.", "(2,2)"),
        (r"Thus $\boxed{6}$. Note that $\boxed{12}$ would be the answer if the order mattered.", "6"),
        # a note that names the answer is no aside; a revision replaces the earlier box
        ("So $\\boxed{5}$.\n\nNote that the final answer is $\\boxed{7}$.", "7"),
        (r"So $\boxed{12}$. Wait, I double counted the corners, so the answer is $\boxed{14}$.", "14"),
        # parts are joined only when every part from (a) on is boxed
        ("**(a)** The sum is 5.\n\n**(b)** Thus the product is $\\boxed{7}$.", "7"),
    ],
)
def test_boxes_that_are_not_a_conjunction_are_not_joined(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "gold"),
    [
        (
            r"The solutions are $\boxed{(2,2)}$. Note that $\boxed{(6,2)}$ fails because $6 > 5$.",
            "(2, 2), (6, 2)",
        ),
        (r"So $\boxed{6}$ (not $\boxed{12}$, which double counts).", "6, 12"),
        (r"The answer is $\boxed{6}$ (the other root $\boxed{-6}$ is rejected).", "6, -6"),
    ],
)
def test_an_aside_box_does_not_complete_a_list_gold(text: str, gold: str) -> None:
    assert not grade(text, gold).correct


# ---------------------------------------------------------------------------------------------- 3. named answers
@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("4, 5", "AB=4, CD=5", T),
        ("CD=5, AB=4", "AB=4, CD=5", T),
        ("1", "|AB|=1", T),
        ("1", "A:B = 1", T),
        ("11:21", "V_1:V_2 = 11:21", T),
        ("(5,2),(7,2)", "p=5,q=2; p=7,q=2", T),
        ("q=2, p=5; q=2, p=7", "p=5,q=2; p=7,q=2", T),
        ("(x, y) = (3, 4)", "x = 3, y = 4", T),
        ("b = 3, a = 2", "(a, b) = (2, 3)", T),
        ("a = 3, b = 2", "(a, b) = (2, 3)", F),
        (r"\angle BAC = 30^\circ", r"30^\circ", T),
        ("4", r"\overline{AB} = 4", T),
        # near misses: order of named values, other names, wrong values, a missing group
        ("5, 4", "AB=4, CD=5", F),
        ("AB=5, CD=4", "AB=4, CD=5", F),
        ("2", "|AB|=1", F),
        ("A:C = 1", "A:B = 1", F),
        ("21:11", "V_1:V_2 = 11:21", F),
        ("(2,5),(2,7)", "p=5,q=2; p=7,q=2", F),
        ("(5,2)", "p=5,q=2; p=7,q=2", F),
        ("CD = 4", "AB = 4", F),
        ("x=2, y=1", "x=1, y=2", F),
    ],
)
def test_named_and_multi_part_answers(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


# ---------------------------------------------------------------------------------------------- 4. relations
@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("-x > -1", "x < 1", T),
        ("(0, 1)", "0 < f(x) < 1", T),
        ("0 < f(x) < 1", "(0,1)", T),
        (r"2x + 1 \le 5", r"x \le 2", T),
        ("-3 < 2x - 1 < 5", "(-1, 3)", T),
        (r"x \ge -\frac{3}{2}", r"-2x \le 3", T),
        ("-x < -1", "x < 1", F),
        ("[0, 1)", "0 < f(x) < 1", F),
        ("2x+1 < 5", r"x \le 2", F),
        ("2x + y < 3", "x < 1", F),
        ("x^2 < 1", "x < 1", F),
    ],
)
def test_relations_in_other_forms(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


# ---------------------------------------------------------------------------------------------- 5. numbers
@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("14{,}916", "14916", T),
        (r"14{\,}916", "14916", T),
        (r"14\thinspace916", "14916", T),
        (r"\frac13 \approx 0.333", r"\frac13", T),
        (r"\frac13 ≈ 0.333", r"\frac13", T),
        (r"\frac{1}{3} \text{ (approximately } 0.333)", r"\frac13", T),
        (r"x = \frac{5}{7} \approx 0.714", r"\frac57", T),
        (r"\frac13 \approx 0.333", "0.333", T),  # the decimal the question asked for, given beside the value
        # an exact value never equals a rounded decimal; a comma is never a decimal point
        ("0.333", r"\frac13", F),
        (r"\frac13 \approx 0.333", r"\frac23", F),
        (r"\frac13 \approx 0.3", "0.333", F),
        (r"\pi \approx 3.14", r"\frac{22}{7}", F),
        (r"0{,}5", "0.5", F),
        ("14.916", "14916", F),
    ],
)
def test_number_forms(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


# ---------------------------------------------------------------------------------------------- 6. sums and text
@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("2^n - 1", r"\sum_{k=0}^{n-1} 2^k", T),
        (r"\sum_{j=0}^{n-1} 2^j", r"\sum_{k=0}^{n-1} 2^k", T),
        ("385", r"\sum_{i=1}^{10} i^2", T),
        ("n+1", r"\prod_{k=1}^{n}\frac{k+1}{k}", T),
        (r"\sum_{k=0}^{n} \binom{n}{k}", "2^n", T),
        (r"\sum_{k=1}^{\infty} \frac{1}{k^2}", r"\frac{\pi^2}{6}", T),
        (r"\int_0^1 x^2 \, dx", r"\int_{0}^{1} x^{2}\,dx", T),
        (r"\sum_{k=1}^{n-1} 2^k", r"\sum_{k=0}^{n-1} 2^k", F),
        (r"\prod_{k=0}^{n-1} 2^k", r"\sum_{k=0}^{n-1} 2^k", F),
        ("386", r"\sum_{i=1}^{10} i^2", F),
        (r"\sum_{k=0}^{n-1} 2^k + \frac1e", r"\sum_{k=0}^{n-1} 2^k - \frac1e", F),
        (r"1+\frac1e", r"1-\frac1e", F),
        (r"\int_0^1 x^2\,dx + 1", r"\int_0^1 x^2\,dx - 1", F),
    ],
)
def test_sums_products_and_unparsed_formulas(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


def test_a_sum_that_differs_at_a_count_is_rejected_without_sympy() -> None:
    before = stats()["escalations"]
    assert not answers_match(r"\prod_{k=0}^{n-1} 2^k", r"\sum_{k=0}^{n-1} 2^k")
    assert stats()["escalations"] == before


@pytest.mark.parametrize(
    "given",
    [
        r"\prod_{i=1}^{1000} (i^{30}+1)",  # too big to multiply out in-process: sympy, under the timeout
        r"\sum_{i=1}^{2000}\sum_{j=1}^{2000} i^{j}",  # nested sums multiply the work: sympy, under the timeout
        r"\sum_{k=1}^{10^{12}} k^{k}",
    ],
)
def test_big_sums_are_rejected_within_the_timeout(given: str) -> None:
    warm_up()  # worker start-up (importing sympy) is not part of a pair's time
    start = time.monotonic()
    ok, _ = match_reason(given, "5", timeout=1.0)
    assert ok is False
    assert time.monotonic() - start < 1.0 + 3.0  # the limit, plus killing a worker on a loaded machine


# ---------------------------------------------------------------------------------------------- 7. comma groups
@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("1,111", "1111", T),
        ("1{,}500", "1500", T),
        ("111, 0", "0,111", T),
        ("111", "0,111", F),
        ("500", "0,500", F),
        ("111", "0{,}111", F),
        ("500", "0 500", F),
        ("0.5", "0,5", F),
    ],
)
def test_a_group_starting_with_zero_is_not_a_thousands_group(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


# ---------------------------------------------------------------------------------------------- the case sets
@pytest.mark.parametrize("path", RECALL_SUITES, ids=lambda p: p.stem)
def test_recall_suite_has_no_false_accept(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert len(rows) >= 15 and any(not r["label"] for r in rows)  # each class carries its near misses
    verdicts = {
        r["id"]: answers_match(r["given"], r["gold"])
        if r["kind"] == "answer"
        else grade(r["given"], r["gold"]).correct
        for r in rows
    }
    false_accepts = [r["id"] for r in rows if verdicts[r["id"]] and not r["label"]]
    false_rejects = [r["id"] for r in rows if not verdicts[r["id"]] and r["label"]]
    assert false_accepts == []
    assert len(false_rejects) <= len(rows) // 10, false_rejects
