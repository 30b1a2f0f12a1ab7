"""Evolve stage logic with a scripted teacher and solver (OpenAI protocol on loopback): which rewrites are kept and
why the others are not, per type; pseudo-gold votes; backward questions against the masked number; a server that
ignores `n`; and that a rerun answers every request from the cache."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.funnel import Funnel
from pipeline.llm import ModelConfig, ModelPool
from pipeline.records import make_record
from pipeline.stages import StageContext, get_stage
from pipeline.stages.evolve import (
    Params,
    clean_problem,
    mask_choices,
    run,
    split_question_sentence,
    split_stated_answer,
)
from pipeline.verify import answers_match, extract_answer
from tests.fixtures.scripted_openai import ScriptedOpenAIServer

ANN = "Ann has 3 apples and buys 4 more. How many apples does she have?"
BOB = "Bob has 10 pens and gives away 4 of them. How many pens are left?"
SEEDS = {ANN: "7", BOB: "6"}

# what the scripted teacher writes, per (type, seed)
REWRITES = {
    ("change_numbers", ANN): "Ann has 5 apples and buys 4 more. How many apples does she have?",
    ("change_numbers", BOB): BOB,  # unchanged: rejected
    ("rephrase", ANN): "Rephrased question: Ann owns 3 apples, then she purchases 4 additional ones. How many "
    "apples does Ann own now?",
    ("rephrase", BOB): "Bob had 10 pens. He gave 4 away. How many pens remain with Bob?",  # solver errs: wrong
    ("complexity", ANN): "Ann has 3 apples and buys 4 more, so she has 7 apples. Then she buys 5 more. How many "
    "apples does she have now? The answer is 12.",  # a worked solution in the question
    ("complexity", BOB): "Bob has 10 pens and gives away 4 of them. Then he buys 3 boxes with 2 pens each. How "
    "many pens does he have now?",  # solvers disagree
}
# the solver's answer per question (a list: one per sample index)
SOLVED = {
    "Ann has 5 apples": ["9"],
    "Ann owns 3 apples": ["7"],
    "Bob had 10 pens": ["5"],
    "3 boxes with 2 pens": ["12", "11", "13", "10"],
}


def parse_user(body: dict[str, Any]) -> str:
    return body["messages"][-1]["content"]


def responder(body: dict[str, Any], i: int) -> str:
    user = parse_user(body)
    if user.startswith("Solve the following problem"):
        question = user.split("\n\n", 1)[1]
        if "unknown variable" in question:  # backward: the scripted solver knows each masked number
            answer = next(v for m, v in _MASKS.items() if question.startswith(split_question_sentence(m)[0]))
            return f"Working backwards from the stated answer, the unknown is {answer}. \\boxed{{{answer}}}"
        for key, answers in SOLVED.items():
            if key in question:
                answer = answers[i % len(answers)]
                return f"Adding up the quantities step by step gives {answer} in total. \\boxed{{{answer}}}"
        return "I cannot solve this."
    if user.startswith("Follow the given examples"):  # Self-Verification statement
        ask = user.rsplit("Question: ", 1)[1]
        answer = re.search(r"The answer is (\S+?)\.\s*\nResult:", ask).group(1)
        return f"Result: She has {answer} apples." if "she" in ask else f"He has {answer} pens left."
    seed = next(q for q in SEEDS if q in user)
    for kind, marker in (("change_numbers", "changing specific numbers"), ("rephrase", "Rephrase the above"),
                         ("complexity", "more complex than the original")):
        if marker in user:
            text = REWRITES[(kind, seed)]
            if "####" in user and kind == "change_numbers":  # teacher_answer: it states a (wrong) answer
                return f"{text}\n#### 10"
            return text
    raise AssertionError(f"unscripted prompt: {user[:200]}")


_MASKS: dict[str, str] = {}


def seeds() -> list[dict[str, Any]]:
    return [
        make_record(question=q, solution=None, answer=a, method="seed",
                    source={"dataset": "test", "split": "train", "seed_id": f"seeds:{i}"},
                    verification={"status": "gold", "method": "gold"})
        for i, (q, a) in enumerate(SEEDS.items())
    ]


def _run(server: ScriptedOpenAIServer, cache: Path | None, **params: Any) -> tuple[list[dict[str, Any]], Funnel,
                                                                                   list[tuple[str, dict, str]]]:
    funnel = Funnel()
    dropped: list[tuple[str, dict, str]] = []
    cfg = ModelConfig(backend="openai", model=server.model, base_url=server.base_url, retry_backoff_s=0.05)
    with ModelPool({"teacher": cfg}, cache) as pool:
        ctx = StageContext(stage="evolve", seed=0, funnel=funnel, roles={"teacher": "teacher", "solver": "teacher"},
                           model=lambda n: pool.client(n, "evolve", funnel),
                           on_reject=lambda c, r, d: dropped.append((r, c, d)))
        rows = run(seeds(), Params(**params), ctx)
    return rows, funnel, dropped


@pytest.fixture
def server() -> Any:
    with ScriptedOpenAIServer(responder=responder) as srv:
        yield srv


def test_params_and_registry() -> None:
    assert get_stage("evolve").roles.keys() == {"teacher", "solver"}
    with pytest.raises(ValueError, match="unknown evolve types"):
        Params(types=["sideways"])
    with pytest.raises(ValueError, match="min_agree"):
        Params(samples=2, min_agree=3)
    with pytest.raises(ValueError, match="at least 2"):  # a single answer is no agreement for a new gold
        Params(types=["upward"], samples=1, min_agree=1)
    assert Params(types=["rephrase", "fobar"], samples=1, min_agree=1).samples == 1  # checked against a gold
    dumped = Params().model_dump()
    assert {"change_numbers", "upward_reasoning", "breadth", "rephrase", "sv_statement", "solve"} <= set(
        dumped["template_hashes"])
    assert Params(**dumped) == Params()


def test_text_helpers() -> None:
    assert clean_problem("**New problem:** Ann has 5 apples. How many?") == "Ann has 5 apples. How many?"
    assert clean_problem("#Rewritten Prompt#: Ann has 5 apples.") == "Ann has 5 apples."
    assert split_stated_answer("Ann has 5 apples. How many?\n#### 9") == ("Ann has 5 apples. How many?", "9")
    assert split_question_sentence(ANN) == ("Ann has 3 apples and buys 4 more.", "How many apples does she have?")
    assert [t for _, _, t in mask_choices("In 2019 Cy had 1 box of 12.5 kg and $1,200.")] == ["12.5", "1,200"]


def test_each_type_kept_or_rejected_for_its_reason(server: ScriptedOpenAIServer) -> None:
    rows, funnel, dropped = _run(server, None, types=["change_numbers", "rephrase", "complexity"], samples=4,
                                 min_agree=0.5, reasks=0)
    by = {(json.loads(r["method_params"])["type"], r["question"][:8]): r for r in rows}
    assert set(by) == {("change_numbers", "Ann has "), ("rephrase", "Ann owns")}
    changed = by[("change_numbers", "Ann has ")]
    assert changed["answer"] == "9" and changed["verification"]["method"] == "majority"
    assert changed["verification"]["votes"] == 4 and changed["verification"]["samples"] == 4
    assert "pseudo-gold" in changed["verification"]["detail"]
    rephrased = by[("rephrase", "Ann owns")]
    assert rephrased["question"].startswith("Ann owns 3 apples")  # the label is stripped
    assert rephrased["answer"] == "7" and rephrased["verification"]["method"] == "gold"
    for row in rows:
        assert answers_match(extract_answer(row["solution"]), row["answer"])
        assert row["parent_ids"] and json.loads(row["generator"]["roles"]).keys() == {"teacher", "solver"}
    assert funnel.reasons("evolve") == {"unchanged_question": 1, "wrong_answer": 1, "contains_solution": 1,
                                        "no_agreement": 1}
    reasons = {(r, json.loads(c["method_params"])["type"]) for r, c, _ in dropped}
    assert reasons == {("unchanged_question", "change_numbers"), ("wrong_answer", "rephrase"),
                       ("contains_solution", "complexity"), ("no_agreement", "complexity")}
    leaked = next(c for r, c, _ in dropped if r == "contains_solution")
    assert "The answer is 12" in leaked["question"]  # the dropped table shows what the teacher wrote
    assert funnel.get("evolve", "in") == 2 and funnel.get("evolve", "generated") == 2


def test_teacher_answer_must_agree(server: ScriptedOpenAIServer) -> None:
    rows, funnel, _ = _run(server, None, types=["change_numbers"], samples=2, min_agree=2, teacher_answer=True,
                           reasks=0)
    assert rows == []
    assert funnel.reasons("evolve") == {"teacher_disagrees": 1, "unchanged_question": 1}


def test_backward_questions_never_mask_a_number_equal_to_the_answer() -> None:
    """The backward question states the forward answer: masking a number equal to it lets a solver copy the
    stated answer and match (a real model's kept row did). Such numbers are never masked; with no other number
    the seed is rejected."""
    from pipeline.stages.evolve import _candidates

    benny = ("Benny bought 2 soft drinks for $4 each and 5 candy bars. He spent a total of 28 dollars. "
             "How much did each candy bar cost?")
    only = "A box holds 4 pens. How many pens are in the box?"
    recs = [make_record(question=q, solution=None, answer="4", method="seed",
                        source={"dataset": "test", "split": "train", "seed_id": f"s:{i}"},
                        verification={"status": "gold", "method": "gold"}) for i, q in enumerate([benny, only])]
    masked = set()
    for seed in range(40):
        funnel = Funnel()
        ctx = StageContext(stage="evolve", seed=seed, funnel=funnel)
        cands = _candidates(recs, Params(types=["fobar", "sv"], per_type=1), ctx)
        masked |= {c.gold for c in cands}
        assert all(c.parent["question"] == benny for c in cands)
        assert funnel.reasons("evolve") == {"no_number_to_mask": 2}
    assert masked == {"2", "5", "28"}


def test_backward_questions_checked_against_the_masked_number(server: ScriptedOpenAIServer) -> None:
    from pipeline.stages.evolve import _candidates

    ctx = StageContext(stage="evolve", seed=0)
    for cand in _candidates(seeds(), Params(types=["fobar", "sv"]), ctx):
        _MASKS[cand.masked] = cand.gold
    rows, funnel, _ = _run(server, None, types=["fobar", "sv"], samples=2)
    assert len(rows) == 4, funnel.to_dict()
    for row in rows:
        params = json.loads(row["method_params"])
        assert row["answer"] == params["masked"] and params["forward_answer"] in SEEDS.values()
        assert "x" in row["question"] and "unknown variable x" in row["question"]
        if params["type"] == "fobar":
            assert f"the answer to the above question is {params['forward_answer']}," in row["question"]
        else:  # the statement carries the forward answer; the question sentence is gone
            assert "How many" not in row["question"] and params["forward_answer"] in row["question"]


def test_server_ignoring_n_and_rerun_from_cache(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(responder=responder, ignore_n=True) as srv:
        rows, funnel, _ = _run(srv, tmp_path / "cache.sqlite", types=["change_numbers", "rephrase"], samples=3,
                               min_agree=2, reasks=0)
        assert {r["answer"] for r in rows} == {"9", "7"}
        assert all(r["verification"]["votes"] == 3 and r["verification"]["samples"] == 3 for r in rows)
        sent = len(srv.received)
        again, funnel2, _ = _run(srv, tmp_path / "cache.sqlite", types=["change_numbers", "rephrase"], samples=3,
                                 min_agree=2, reasks=0)
        assert len(srv.received) == sent  # the rerun reached the server not once
        assert [r["id"] for r in again] == [r["id"] for r in rows]
        assert funnel2.get("evolve", "requests") == 0 and funnel2.get("evolve", "cache_hits") > 0


def test_backward_solution_with_a_false_equation_is_refused() -> None:
    """Real model (FOBAR, x = 6): "(x + 10) = 2x + 10 … 10 = x", then "2x + 10 = 22, x = 6" boxed the masked
    number. x is known, so an equation false at x refuses the sample; agreement then fails."""
    from pipeline.stages.evolve import _candidates

    for cand in _candidates(seeds(), Params(types=["fobar"]), StageContext(stage="evolve", seed=0)):
        _MASKS[cand.masked] = cand.gold

    def sloppy(body: dict[str, Any], i: int) -> str:
        user = parse_user(body)
        if "unknown variable" in user:
            answer = next(v for m, v in _MASKS.items() if split_question_sentence(m)[0] in user)
            return (f"Working backwards, the total gives \\( x + 1 = {answer} \\), and solving it, "
                    f"the unknown is {answer}. \\boxed{{{answer}}}")
        return responder(body, i)

    with ScriptedOpenAIServer(responder=sloppy) as srv:
        rows, funnel, dropped = _run(srv, None, types=["fobar"], samples=2)
    assert rows == [] and {reason for reason, _, _ in dropped} == {"no_agreement"}
    assert funnel.to_dict()["evolve"]["malformed:solve_false_equation"] >= 2

    def wrong(body: dict[str, Any], i: int) -> str:  # a wrong x is wrong_answer, not re-asked as a false equation
        if "unknown variable" in parse_user(body):
            return "Working backwards, \\( x + 1 = 100 \\), so the unknown is 99. \\boxed{99}"
        return responder(body, i)

    with ScriptedOpenAIServer(responder=wrong) as srv:
        rows, funnel, dropped = _run(srv, None, types=["fobar"], samples=2)
    assert rows == [] and {reason for reason, _, _ in dropped} == {"wrong_answer"}
    assert "malformed:solve_false_equation" not in funnel.to_dict()["evolve"]


def test_false_equations_on_real_solutions() -> None:
    from pipeline.quality import false_equations

    noah = ("3. **Set up the equation**: \\((x + 10) = 2x + 10\\)\n4. **Solve for \\(x\\)**: Subtract \\(x\\) ...:\n"
            "   \\[\n   10 = x\n   \\]\n5. ... \\(2x + 10 = 22\\) and solve for \\(x\\):\n   \\[\n   2x = 22 - 10\n"
            "   \\]\n   \\[\n   x = \\frac{12}{2}\n   \\]\nTherefore, the value of unknown variable \\(x\\) is \\(\\boxed{6}\\).")
    assert false_equations(noah, "x", "6") == ["(x + 10) = 2x + 10", "10 = x"]
    missy = ("   \\[\n   x \\times 28 + 10 = 150\n   \\]\n4. ... subtracting 10 from both sides:\n   \\[\n"
             "   x \\times 28 - 10 = 140\n   \\]\n5. ...\n   \\[\n   x = \\frac{140}{28}\n   \\]")
    assert false_equations(missy, "x", "5") == ["x \\times 28 - 10 = 140"]
    trash = ("the number of trash cans paid for is \\( x + 2x = 3x \\). ...\n\\[ 3x = 42 \\]\n"
             "\\[ x = \\frac{42}{3} = 14 \\]\n```python\nx = total_trash_cans_paid_for / 3\nprint(x)\n```\n"
             "```output\n14.0\n```\nThe value of unknown variable \\( x \\) is \\(\\boxed{14}\\).")
    assert false_equations(trash, "x", "14") == []
    assert false_equations(trash.replace("3x = 42", "3x = 43"), "x", "14") == ["3x = 43"]
    # skipped, not judged: text, another unknown, an approximation, units; rounding after "=" is forgiven
    assert false_equations("\\[ \\text{Tom} = x \\times 12 \\] \\[ y = x + 1 \\] \\[ x \\approx 4 \\]", "x", "3") == []
    assert false_equations("\\( x = \\frac{14}{3} = 4.67 \\)", "x", "14/3") == []
    assert false_equations("2 x 3 = 6", "x", "oops") == []  # a value that is no number: nothing to check
