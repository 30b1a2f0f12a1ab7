"""MathSmith stage logic with a scripted teacher and solver (OpenAI protocol on loopback): the concept bank and its
sampling, parsing of <rationale>/<problem>, agreement over the samples ASKED, the kept solution, difficulty signals,
weakness-focused variants, reruns from the cache, and the card's licence."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline.funnel import Funnel
from pipeline.llm import ModelConfig, ModelPool
from pipeline.paths import DATA_DIR
from pipeline.records import make_record
from pipeline.stages import StageContext, get_stage
from pipeline.stages.mathsmith import (
    Params,
    claimed_concepts,
    claimed_features,
    format_score,
    load_concepts,
    parse_generation,
    run,
)
from tests.fixtures.scripted_openai import ScriptedOpenAIServer

# each test concept makes the scripted models behave one way when it is offered first
KINDS = {
    "OK": "kept",  # a good problem, all samples answer 42
    "HALF": "kept",  # exactly 3 of 6 samples answer 42
    "NOTAG": "generate_no_problem_tag",
    "FEW": "generate_too_few_features",
    "SPLIT": "no_agreement",  # every sample a different answer
    "LEAK": "problem_leaks_answer",  # the problem states the answer all samples agree on
}


def bank_file(tmp_path: Path) -> Path:
    path = tmp_path / "bank.jsonl"
    rows = [{"concept": f"{k} concept", "explanation": f"what {k} means", "category": "11_Number_theory"} for k in KINDS]
    rows.append({"concept": "circle", "explanation": "points at one distance", "area": "51_Geometry"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def scripted(body: dict[str, Any], i: int) -> str:
    user = body["messages"][-1]["content"]
    if user.startswith("You are a creator"):
        names = re.findall(r"^\d+\. ([^:\n]+)", user, re.M)
        kind = names[0].split()[0]
        if kind == "NOTAG":
            return "Here is a hard problem about numbers: what is 6 times 7?"
        features = "a" if kind == "FEW" else "a, c, h"
        problem = (f"KIND-{kind}: Let n be the least positive integer with property P, whose sum is 42. What is n?"
                   if kind == "LEAK" else f"KIND-{kind}: Find the least positive integer n such that n has property P.")
        return (f"<rationale>\nConcepts used: {names[0]}; {names[1] if len(names) > 1 else names[0]}\n"
                f"Features used: {features}\nStep 1: link them.\nStep 2: add a boundary.\n</rationale>\n"
                f"<problem>\n{problem}\n</problem>")
    kind = user.split("KIND-", 1)[1].split(":", 1)[0]
    if kind == "SPLIT" or (kind == "HALF" and i >= 3):
        return f"Trying the cases one by one, the smallest that works is {100 + i}. \\boxed{{{100 + i}}}"
    padding = " Checking each smaller value in turn rules it out." * (i % 2)
    return f"Testing the candidates in order, the first one with property P is 42.{padding} \\boxed{{42}}"


@pytest.fixture
def server() -> Any:
    with ScriptedOpenAIServer(responder=scripted) as srv:
        yield srv


def triggers(n: int) -> list[dict[str, Any]]:
    return [make_record(question=f"trigger {i}", solution=None, answer=None, method="seed",
                        source={"dataset": "t", "split": "train", "seed_id": f"t:{i}"}) for i in range(n)]


def run_stage(srv: ScriptedOpenAIServer, records: list[dict[str, Any]], cache: Path | None, batch: int = 0,
              **params: Any) -> tuple[list[dict[str, Any]], Funnel, list[tuple[dict[str, Any], str, str]]]:
    funnel, dropped = Funnel(), []
    cfg = ModelConfig(backend="openai", model=srv.model, base_url=srv.base_url, retry_backoff_s=0.05)
    with ModelPool({"teacher": cfg, "solver": cfg}, cache) as pool:
        ctx = StageContext(stage="mathsmith", seed=0, funnel=funnel, batch=batch,
                           model=lambda n: pool.client(n, "mathsmith", funnel),
                           on_reject=lambda cand, reason, detail: dropped.append((cand, reason, detail)))
        rows = run(records, Params(**params), ctx)
    return rows, funnel, dropped


def test_params_and_registry() -> None:
    stage = get_stage("mathsmith")
    assert stage.roles.keys() == {"teacher", "solver"} and stage.verifier == "majority"
    p = Params()
    assert (p.concepts_per_problem, p.samples, p.min_agree, p.concepts) == (5, 6, 3, ["planetmath"])
    assert Params(**p.model_dump()) == p  # a dumped Params validates again (computed fields dropped)
    for bad in ({"min_agree": 7}, {"min_agree": 1.5}, {"min_difficulty": {"hardness": 1}}, {"mode": "weakness"},
                {"failures": "x.jsonl"}):
        with pytest.raises(ValueError):
            Params(**bad)


def test_shipped_bank_licence_and_categories(tmp_path: Path) -> None:
    bank = load_concepts(["planetmath"], DATA_DIR)
    assert 250 <= len(bank) <= 400 and all(c.explanation and c.category for c in bank)
    assert "Creative Commons" in (DATA_DIR / "concepts/LICENSE.planetmath").read_text()
    geometry = load_concepts(["planetmath"], DATA_DIR, ["geometry"])
    assert geometry and {c.category for c in geometry} == {"51_Geometry"}
    own = load_concepts([str(bank_file(tmp_path))], DATA_DIR, ["GEOMETRY"])
    assert [(c.concept, c.category) for c in own] == [("circle", "51_Geometry")]  # `area` read as the category
    with pytest.raises(ValueError, match="no concept"):
        load_concepts(["planetmath"], DATA_DIR, ["astrology"])
    with pytest.raises(FileNotFoundError, match="planetmath"):
        load_concepts(["nope.jsonl"], DATA_DIR)

    from pipeline.io.card import _license, input_licenses
    from pipeline.paths import RECIPES_DIR
    from pipeline.recipe import load_recipe

    recipe = load_recipe(RECIPES_DIR / "mathsmith.yaml")
    assert input_licenses(recipe)["mathsmith: concept bank planetmath"] == "cc-by-sa-3.0"
    assert _license(recipe, ["mathsmith"]) == "cc-by-sa-3.0"  # share-alike wins over the MIT triggers


def test_parsing_helpers() -> None:
    text = "<rationale>Concepts used: a; b\nFeatures used: (a), c and h\nStep 1: x</rationale><problem> P? </problem>"
    assert parse_generation(text) == ("Concepts used: a; b\nFeatures used: (a), c and h\nStep 1: x", "P?")
    assert parse_generation("<problem>P?</problem>") == (None, "P?")
    assert parse_generation("<rationale>r\n<problem>P?</problem>") == ("r", "P?")  # an open rationale ends there
    assert parse_generation("<rationale> </rationale>") == (None, None)
    # the step stops at </problem>, which servers leave out: an open problem that stopped is whole, one cut is not
    assert parse_generation("<rationale>r</rationale><problem>P?", "stop") == ("r", "P?")
    assert parse_generation("<rationale>r</rationale><problem>P?", "length") == ("r", None)
    assert claimed_features("Features used: (a), c and h") == [
        "multi-step reasoning", "implicit or reverse logic", "extreme conditions"]
    assert claimed_features("we add distractors and use cross-topic integration") == [
        "cross-topic integration", "distractors"]
    from pipeline.stages.mathsmith import Concept

    assert claimed_concepts("Uses the Prime  Number theorem.", [Concept("prime number theorem"), Concept("ring")]) == [
        "prime number theorem"]
    assert format_score("no steps") == 0.7 and format_score("Step 1 Step 2 Step 3 Step 4 Step 5") == 1.0
    assert format_score(" ".join(f"Step {k}" for k in range(1, 9))) == pytest.approx(0.7 + 0.3 * 0.4)


def test_keeps_agreed_problems_and_counts_every_drop(server: ScriptedOpenAIServer, tmp_path: Path) -> None:
    bank = str(bank_file(tmp_path))
    rows, funnel, dropped = run_stage(server, triggers(24), tmp_path / "c.sqlite", concepts=[bank],
                                      categories=["number"], concepts_per_problem=3)
    outcome = Counter()
    for row in rows:
        kind = row["concepts"][0].split()[0]
        outcome[KINDS[kind]] += 1
        assert KINDS[kind] == "kept" and row["method"] == "mathsmith" and row["answer"] == "42"
        assert len(row["concepts"]) == 3 and "circle" not in row["concepts"]  # offered, from the category only
        mp = json.loads(row["method_params"])
        assert mp["concepts_used"] == row["concepts"][:2]  # the rationale names the first two offered
        assert mp["features_used"] == ["multi-step reasoning", "implicit or reverse logic", "extreme conditions"]
        assert mp["answers"].count("42") == (6 if kind == "OK" else 3) and len(mp["answers"]) == 6
        ver = row["verification"]
        assert ver["status"] == "verified" and ver["method"] == "majority" and ver["samples"] == 6
        assert ver["votes"] == (6 if kind == "OK" else 3)
        difficulty = json.loads(row["difficulty"])
        assert difficulty["r_consist"] == ver["votes"] / 6 and difficulty["r_format"] == pytest.approx(0.7 + 0.3 * 0.4)
        assert difficulty["r_len"] == pytest.approx(difficulty["solver_tokens"] / 32768, abs=1e-6)
        assert difficulty["score"] == pytest.approx(
            difficulty["r_format"] + 0.7 * difficulty["r_len"] + 0.3 * difficulty["r_consist"], abs=1e-3)
        # the kept solution is the shortest agreeing sample (odd samples pad theirs)
        assert "Checking each smaller value" not in row["solution"] and row["solution"].endswith("\\boxed{42}")
        assert row["source"]["dataset"] == "mathsmith" and not row["parent_ids"]
        assert json.loads(row["generator"]["roles"]).keys() == {"teacher", "solver"}
    for cand, reason, _detail in dropped:
        kind = cand["concepts"][0].split()[0]
        assert reason == KINDS[kind] and cand["verification"]["status"] == "failed"
        outcome[reason] += 1
    assert set(outcome) == set(KINDS.values())  # this seed draws every behaviour
    assert sum(outcome.values()) == 24 == funnel.get("mathsmith", "attempts")
    assert funnel.reasons("mathsmith") == {r: n for r, n in outcome.items() if r != "kept"}
    assert funnel.get("mathsmith", "generated") == len(rows) == outcome["kept"]
    assert funnel.get("mathsmith", "problems") == 24 - outcome["generate_no_problem_tag"] - outcome[
        "generate_too_few_features"]
    assert funnel.get("mathsmith", "agreed") == outcome["kept"] + outcome["problem_leaks_answer"]
    # a malformed generation is re-asked once: a request per attempt, one more per malformed one, one per solve
    malformed = outcome["generate_no_problem_tag"] + outcome["generate_too_few_features"]
    assert funnel.get("mathsmith", "requests") == 24 + malformed + funnel.get("mathsmith", "problems")
    # a rerun sends nothing and makes the same rows; a fresh cache asks the same requests
    sent = len(server.received)
    again, funnel2, _ = run_stage(server, triggers(24), tmp_path / "c.sqlite", concepts=[bank],
                                  categories=["number"], concepts_per_problem=3)
    assert len(server.received) == sent and funnel2.get("mathsmith", "requests") == 0
    assert [r["id"] for r in again] == [r["id"] for r in rows]


def test_server_ignoring_n_and_min_difficulty(tmp_path: Path) -> None:
    """llama.cpp returns one choice whatever n: the client fills the other samples, each its own request, and
    agreement still counts against the samples asked. min_difficulty drops what is below a bound."""
    bank = str(bank_file(tmp_path))
    with ScriptedOpenAIServer(responder=scripted, ignore_n=True) as srv:
        rows, funnel, dropped = run_stage(srv, triggers(10), None, concepts=[bank], categories=["number"],
                                          samples=4, min_agree=0.75, keep_solution="random",
                                          min_difficulty={"r_consist": 1.0, "solver_tokens": 5})
        solve_requests = sum("KIND-" in b["messages"][-1]["content"] for b in srv.received)
    # one choice per request: the other 3 samples of each problem came through their own requests
    assert solve_requests == 4 * funnel.get("mathsmith", "problems") > 0
    # sample index 0 on every request: HALF answers 42 and SPLIT 100 on all four samples
    assert rows and all(r["verification"]["votes"] == 4 for r in rows)
    assert {r["answer"] for r in rows if r["concepts"][0].startswith(("OK", "HALF"))} == {"42"}
    assert {r["answer"] for r in rows if r["concepts"][0].startswith("SPLIT")} <= {"100"}
    reasons = {reason for _, reason, _ in dropped}
    assert reasons <= {"generate_no_problem_tag", "generate_too_few_features", "problem_leaks_answer",
                       "below_min_difficulty"}
    with ScriptedOpenAIServer(responder=scripted, ignore_n=True) as srv:
        _, funnel, dropped = run_stage(srv, triggers(10), None, concepts=[bank], categories=["number"], samples=4,
                                       min_agree=0.75, min_difficulty={"solver_tokens": 10_000})
    assert funnel.get("mathsmith", "generated") == 0 and funnel.reasons("mathsmith")["below_min_difficulty"] > 0
    assert any("solver_tokens=" in detail for _, reason, detail in dropped if reason == "below_min_difficulty")


def test_weakness_variants_from_the_failures_concepts(server: ScriptedOpenAIServer, tmp_path: Path) -> None:
    bank = bank_file(tmp_path)
    failures = tmp_path / "failures.jsonl"
    failures.write_text("\n".join(json.dumps(f) for f in [
        {"id": "w1", "question": "old one", "answer": "5", "concepts": ["OK concept", "circle"]},
        {"id": "w2", "question": "old two", "concepts": [{"concept": "SPLIT thing", "explanation": "own words"}]},
        {"id": "w3", "question": "no concepts here"},
    ]) + "\n")
    params = {"mode": "weakness", "failures": str(failures), "concepts": [str(bank)], "variants_per_failure": 2}
    rows, funnel, dropped = run_stage(server, triggers(3), None, **params)
    assert funnel.get("mathsmith", "attempts") == 4 and len(rows) == 2
    assert all(r["concepts"] == ["OK concept", "circle"] for r in rows)
    assert {json.loads(r["method_params"])["failure"]["id"] for r in rows} == {"w1"}
    asked = [b for b in server.received if "creator" in b["messages"][-1]["content"]]
    assert len({b["seed"] for b in asked}) == 4  # each variant of a failure is its own draw
    prompts = [b["messages"][-1]["content"] for b in asked]
    assert any("2. circle: points at one distance" in p for p in prompts)  # explanation looked up in the bank
    assert any("1. SPLIT thing: own words" in p for p in prompts)
    assert funnel.reasons("mathsmith") == {"no_agreement": 2, "failure_without_concepts": 1}
    assert [reason for _, reason, _ in dropped] == ["no_agreement", "no_agreement"]
    # later batches of the stage do not repeat the failures; the file's content is part of the batch key
    later, funnel, _ = run_stage(server, triggers(3), None, batch=1, **params)
    assert later == [] and funnel.get("mathsmith", "attempts") == 0
    before = Params(**params).model_dump()["failures_sha256"]
    failures.write_text(failures.read_text() + json.dumps({"concepts": ["FEW concept"]}) + "\n")
    assert Params(**params).model_dump()["failures_sha256"] != before


def test_agreement_on_yes_or_no_is_dropped(tmp_path: Path) -> None:
    """Real model: three samples agreed on "\\text{Yes}" for "Determine if the sequence … is Cauchy". Samples agree
    on a yes/no by chance, and the prompt asks for a number or an expression: dropped as yes_no_answer."""

    def yes(body: dict[str, Any], i: int) -> str:
        if body["messages"][-1]["content"].startswith("You are a creator"):
            return scripted(body, i)
        return ("Consecutive distances are below 1/2^i, so for m > n the triangle inequality bounds d(x_n, x_m) by "
                "the tail of a geometric series, which tends to 0. So the sequence is Cauchy. \\boxed{\\text{Yes}}")

    with ScriptedOpenAIServer(responder=yes) as srv:
        rows, funnel, dropped = run_stage(srv, triggers(3), None, concepts=[str(bank_file(tmp_path))],
                                          categories=["number"], concepts_per_problem=3)
    assert rows == [] and funnel.get("mathsmith", "agreed") == 3 - funnel.reasons("mathsmith").get(
        "generate_no_problem_tag", 0) - funnel.reasons("mathsmith").get("generate_too_few_features", 0)
    assert funnel.reasons("mathsmith").get("yes_no_answer", 0) >= 1
    assert all("a guess hits" in detail for _, reason, detail in dropped if reason == "yes_no_answer")


def test_guessable_answers() -> None:
    from pipeline.quality import guessable

    assert all(guessable(a) for a in ("\\text{Yes}", "No", "TRUE", "\\textbf{False}.", "yes"))
    assert not any(guessable(a) for a in ("1", "0", "\\text{Nope}", "yes and no", "x = 2"))
