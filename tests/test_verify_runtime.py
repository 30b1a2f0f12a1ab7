"""Runtime guarantees: hard timeouts, thread and process safety, batch grading, majority vote, bad input."""

from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.verify import Verdict, answers_match, grade, grade_many, majority, match_reason, stats, warm_up

PATHOLOGICAL = "9^{9^{9^{9}}}"

# Pairs that need the sympy sandbox (no fast path decides them) mixed with fast ones.
MIXED_PAIRS = [
    ("2x + y = 0", "y = -2x", True),
    (r"\sqrt{10^{100}+1}", "10^{50}", False),
    (r"\sqrt{5+2\sqrt{6}}", r"\sqrt{2}+\sqrt{3}", True),
    ("72", "72.0", True),
    ("0.5", r"\frac{1}{2}", True),
    ("3, 5, 7", "7,5,3", True),
    (r"\frac{1}{2004!}", r"\frac{1}{2006!}", False),
    ("x^2+1", "1+x^2", True),
    ("5", "6", False),
]


@pytest.fixture(scope="module", autouse=True)
def _workers() -> None:
    warm_up()


def test_pathological_input_is_a_timeout_reject_within_the_limit() -> None:
    before = stats()["timeouts"]
    start = time.monotonic()
    ok, reason = match_reason(PATHOLOGICAL, "5", timeout=1.0)
    elapsed = time.monotonic() - start
    assert (ok, reason) == (False, "timeout")
    assert elapsed < 1.0 + 2.0  # the limit plus killing the worker; never the minutes sympy would need
    assert stats()["timeouts"] == before + 1
    # The pool recovers: the killed worker is replaced and the next hard pair is decided.
    assert match_reason("2x + y = 0", "y = -2x", timeout=10)[0] is True


def test_grade_reports_timeout() -> None:
    verdict = grade(f"The answer is $\\boxed{{{PATHOLOGICAL}}}$.", "3", timeout=1.0)
    assert verdict == Verdict(False, PATHOLOGICAL, "timeout")


def test_identical_pathological_strings_match_without_computing() -> None:
    assert answers_match(PATHOLOGICAL, PATHOLOGICAL, timeout=1.0) is True


def test_simple_numbers_never_reach_sympy() -> None:
    before = stats()["escalations"]
    for given, gold in [
        ("1,000", "1000"),
        ("0.5", r"\frac12"),
        ("-3", "-3.0"),
        ("$72$", "72"),
        (r"5\%", "0.05"),
    ]:
        assert answers_match(given, gold)
    assert stats()["escalations"] == before


def test_many_threads_agree_with_sequential_results() -> None:
    pairs = MIXED_PAIRS * 6
    expected = [answers_match(g, r) for g, r, _ in pairs]
    assert expected == [label for _, _, label in pairs]
    with ThreadPoolExecutor(max_workers=8) as ex:
        got = list(ex.map(lambda p: answers_match(p[0], p[1]), pairs))
    assert got == expected


def _child(queue: mp.Queue) -> None:
    queue.put([answers_match(g, r) for g, r, _ in MIXED_PAIRS])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_works_in_child_processes(method: str) -> None:
    ctx = mp.get_context(method)
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    got = queue.get(timeout=60)
    proc.join(timeout=30)
    assert got == [label for _, _, label in MIXED_PAIRS]
    # The parent's workers were not disturbed by the child.
    assert answers_match("2x + y = 0", "y = -2x") is True


def test_grade_many_matches_single_grades_and_keeps_order() -> None:
    outputs, golds = [], []
    for k in range(150):
        outputs.append(f"Step {k}. The answer is $\\boxed{{{k}}}$.")
        golds.append(str(k if k % 3 else k + 1))
    for g, r, _ in MIXED_PAIRS:
        outputs.append(f"So the answer is $\\boxed{{{g}}}$.")
        golds.append(r)
    batch = grade_many(outputs, golds)
    assert batch == [grade(o, g) for o, g in zip(outputs, golds, strict=True)]
    assert [v.correct for v in batch[:150]] == [k % 3 != 0 for k in range(150)]


def test_grade_many_isolates_a_timeout() -> None:
    outputs = [f"#### {k}" for k in range(100)]
    golds = [str(k) for k in range(100)]
    outputs[40] = f"The answer is $\\boxed{{{PATHOLOGICAL}}}$."
    verdicts = grade_many(outputs, golds, timeout=1.0)
    assert verdicts[40] == Verdict(False, None, "timeout")
    assert all(v.correct for k, v in enumerate(verdicts) if k != 40)


def test_grade_many_on_final_answers() -> None:
    givens = [g for g, _, _ in MIXED_PAIRS] * 10
    golds = [r for _, r, _ in MIXED_PAIRS] * 10
    verdicts = grade_many(givens, golds, extract=False)
    assert [v.correct for v in verdicts] == [label for _, _, label in MIXED_PAIRS] * 10
    assert verdicts[0].extracted == givens[0]


def test_majority_clusters_by_equivalence() -> None:
    answers = ["0.5", r"\frac{1}{2}", "1/2", "2", None, "3"]
    assert majority(answers, 3) in ("0.5", r"\frac{1}{2}", "1/2")
    assert majority(answers, 4) is None
    assert majority(answers, 0.5) is not None
    assert majority(answers, 0.6) is None
    assert majority(["1", "2", "1", "2"], 2) is None  # a tie is no agreement
    assert majority([None, None], 1) is None
    assert majority(["x = 3", "3", "3.0", "4"], 3) in ("x = 3", "3", "3.0")
    assert majority(["x^2+1", "1+x^2", "x^2-1"], 2) in ("x^2+1", "1+x^2")


def test_bad_input_fails_clearly() -> None:
    with pytest.raises(TypeError):
        answers_match(5, "5")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        grade("x", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        grade_many(["a", "b"], ["a"])
    with pytest.raises(ValueError):
        answers_match("1", "1", timeout=0)
    with pytest.raises(ValueError):
        majority(["1"], 1.5)
    with pytest.raises(ValueError):
        majority(["1"], 0)
    with pytest.raises(TypeError):
        majority(["1"], True)
