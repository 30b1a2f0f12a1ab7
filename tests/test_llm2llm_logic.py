"""LLM2LLM logic with scripted models over real HTTP: only wrong ORIGINAL seeds are re-augmented, the round
counts add up, a student per round (recipe list), the pause for a trained student without Prefect, the teacher's
parse and gates, and a rerun that sends nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.build import run_build
from pipeline.io.shards import read_records
from pipeline.recipe import Recipe, parse_recipe
from pipeline.stage_runner import RoundPaused, read_round_inputs, record_round_inputs
from pipeline.stages import RoundInput, get_stage
from pipeline.stages.llm2llm import Params, parse_new_item, round_roles
from tests.fixtures.scripted_openai import ScriptedOpenAIServer

# question -> answer; the scripted students get a seed wrong when its first word is in their HARD set
SEEDS = {
    "Ann has 3 bags of 4 apples. How many apples does Ann have?": "12",
    "Bob has 5 boxes of 6 pens. How many pens does Bob have?": "30",
    "Cy has 7 crates of 2 melons. How many melons does Cy have?": "14",
    "Di has 9 trays of 3 cups. How many cups does Di have?": "27",
    "Ed has 4 racks of 8 hats. How many hats does Ed have?": "32",
}
HARD = {"student-a": {"Bob", "Cy", "Di"}, "student-b": {"Cy"}, "student-c": set()}
NAMES = ["Fay", "Gus", "Hal", "Ivy", "Jo", "Kim", "Lu", "Max", "Ned", "Oz"]
TEACHER_SAYS = "A student got the problem below wrong."
STUDENT_SAYS = "Solve the following math problem. Show your work"


def _product(question: str) -> int:
    a, b = (int(n) for n in re.findall(r"\d+", question)[:2])
    return a * b


def scripted(body: dict[str, Any], sample: int) -> str:
    """Student, teacher and solver, keyed on the shipped templates' wording and the requested model."""
    user = body["messages"][-1]["content"]
    if user.startswith(STUDENT_SAYS):
        question = user.split("Question: ", 1)[1].split("\n", 1)[0]
        wrong = question.split()[0] in HARD.get(body["model"], set()) or question.split()[0] in NAMES
        value = _product(question) + (1 if wrong else 0)  # students get every augmented item wrong
        return f"Multiplying the two counts gives {value}.\n#### {value}"
    if user.startswith(TEACHER_SAYS):
        seed_question = user.split("Now your turn.", 1)[1].split("Question: ", 1)[1].split("\n", 1)[0]
        if seed_question.startswith("Ed"):
            return "I cannot think of a problem."  # unparsable
        first = seed_question.split()[0]
        name = NAMES[(body["seed"] + sample) % len(NAMES)]
        a, b = 2 + body["seed"] % 7, 3 + body["seed"] % 5
        if first == "Di":  # leaks its own answer into the question
            return (f"Question: {name} has {a} jars of {b} coins. How many coins does {name} have? The answer is {a * b}."
                    f"\nAnswer: {name} has {a}*{b} = {a * b} coins.\n#### {a * b}")
        return (f"1. Question: {name} has {a} jars of {b} coins. How many coins does {name} have?\n"
                f"Answer: {name} has {a} jars with {b} coins each, so {a}*{b} = {a * b} coins.\n#### {a * b}")
    question = user.rsplit("\n\n", 1)[1]
    value = _product(question)
    if question.startswith(("Gus", "Ivy")):
        value += 1  # the solver disagrees with the teacher for these names
    return f"There are {value} in total, counting each group. \\boxed{{{value}}}"


def write_seeds(path: Path) -> Path:
    path.write_text("".join(json.dumps({"question": q, "answer": f"Counting: {a}.\n#### {a}"}) + "\n"
                            for q, a in SEEDS.items()))
    return path


class Servers(dict[str, ScriptedOpenAIServer]):
    """One scripted server per model name (a server serves one model), all answering with ``scripted``."""

    @property
    def answered(self) -> list[dict[str, Any]]:
        return [b for srv in self.values() for b in srv.answered]


def recipe(tmp_path: Path, server: Servers, **params: Any) -> Recipe:
    return parse_recipe(yaml.safe_dump(recipe_data(tmp_path, server, **params)), base_dir=tmp_path)


def recipe_data(tmp_path: Path, server: Servers, max_rounds: int = 3, **params: Any) -> dict[str, Any]:
    def model(name: str) -> dict[str, Any]:
        return {"backend": "openai", "model": name, "base_url": server[name].base_url, "retry_backoff_s": 0.05}

    data = {
        "name": "llm2llm-test",
        "seeds": [{"format": "gsm8k", "path": str(write_seeds(tmp_path / "seeds.jsonl"))}],
        "models": {"teacher": model("teacher"), "student": model("student-a"), "solver": model("solver"),
                   "student_b": model("student-b"), "student_c": model("student-c")},
        "stages": [{"rounds": {"name": "llm2llm", "max_rounds": max_rounds,
                               "until": {"no_new_rows": False, "metric": "llm2llm.student_correct/student_total",
                                         "at_least": 0.99}},
                    "stages": [{"method": "llm2llm", "from": ["seeds", "llm2llm"],
                                "params": {"student_temperature": 0, "solver_samples": 2, "min_agree": 2, **params}}]}],
        "batch_size": 4,
        "dedup": {"near": {"enabled": False}},
        "decontaminate": {"enabled": False},
    }
    return data


def teacher_seed_questions(server: Servers) -> list[str]:
    bodies = [b for b in server.answered if b["messages"][-1]["content"].startswith(TEACHER_SAYS)]
    return [b["messages"][-1]["content"].split("Now your turn.", 1)[1].split("Question: ", 1)[1].split("\n", 1)[0]
            for b in bodies]


def student_models(server: Servers) -> set[str]:
    return {b["model"] for b in server.answered if b["messages"][-1]["content"].startswith(STUDENT_SAYS)}


@pytest.fixture
def server() -> Any:
    yield from scripted_servers()


def scripted_servers() -> Any:
    names = ("teacher", "solver", "student-a", "student-b", "student-c")
    # one choice per request whatever n asks, as llama.cpp's server does
    servers = Servers({n: ScriptedOpenAIServer(responder=scripted, model=n, ignore_n=True).start() for n in names})
    yield servers
    for srv in servers.values():
        srv.kill()


def test_params_and_round_roles() -> None:
    stage = get_stage("llm2llm")
    assert set(stage.roles) == {"teacher", "student", "solver"} and stage.round_roles is not None
    assert round_roles(Params(students=["a", "b"]), 1) == {"student": "a"}
    assert round_roles(Params(students=["a", "b"]), 3) == {"student": "b"}  # the last one repeats
    assert round_roles(Params(pause_for_student=True), 1) == {}
    assert isinstance(round_roles(Params(pause_for_student=True), 2)["student"], RoundInput)
    with pytest.raises(ValueError, match="not both"):
        Params(students=["a"], pause_for_student=True)
    with pytest.raises(ValueError, match="min_agree"):
        Params(solver_samples=2, min_agree=3)
    assert Params(solver_samples=3, min_agree=0.5).needed_votes() == 2


def test_parse_new_item() -> None:
    q, sol, ans = parse_new_item("New problem:\n1. Question: Jo has 3 cats. How many?\nAnswer: 3*1 = 3\n#### 3\n"
                                 "2. Question: another one?\nAnswer: 1\n#### 1")
    assert (q, sol, ans) == ("Jo has 3 cats. How many?", "3*1 = 3\n#### 3", "3")
    assert parse_new_item("**Question:** Jo has 1,200 cats?\n**Answer:** so #### 1,200")[2] == "1200"
    # a real 0.5B model's habits: the template's own "Answer key:" label, the answer on the question's line
    assert parse_new_item("Question the student got wrong:\nQuestion: Jo has 2 hats. How many? Answer key: 2 hats."
                          "\n#### 2") == ("Jo has 2 hats. How many?", "2 hats.\n#### 2", "2")
    assert parse_new_item("no problem here") == "unparsed"
    assert parse_new_item("Question: x?\nAnswer: it is 1/2") == "no_final_answer"
    assert parse_new_item("Question: x?") == "no_answer_part"


def test_three_rounds_students_per_round_only_seeds_reaugmented(server: Servers, tmp_path: Path) -> None:
    rec = recipe(tmp_path, server, students=["student", "student_b", "student_c"])
    out = tmp_path / "out"
    result = run_build(rec, out)
    rounds = result.manifest["rounds"]["llm2llm"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert [r["models"]["llm2llm"]["student"] for r in rounds] == ["student-a", "student-b", "student-c"]
    assert student_models(server) == {"student-a", "student-b", "student-c"}
    # only original seeds ever reach the teacher, though every augmented item is answered wrongly
    assert set(teacher_seed_questions(server)) <= set(SEEDS)
    set_size = len(SEEDS)
    for entry, hard in zip(rounds, ("student-a", "student-b", "student-c"), strict=True):
        f = entry["funnel"]["llm2llm"]
        wrong_seeds = len(HARD[hard])
        assert f["student_total"] == set_size  # the set so far: seeds + rows kept in earlier rounds
        assert f["seed_total"] == len(SEEDS) and f["wrong_seeds"] == wrong_seeds
        assert f["wrong_augmented"] == set_size - len(SEEDS) == f.get("augmented_total", 0)
        assert f["student_correct"] == len(SEEDS) - wrong_seeds
        assert f["teacher_asked"] == wrong_seeds
        rejected = sum(v for k, v in f.items() if k.startswith("rejected:"))
        assert f.get("generated", 0) + rejected == f["teacher_asked"] == entry["rows"] + rejected
        set_size += entry["rows"]
    r1 = rounds[0]["funnel"]["llm2llm"]
    assert r1["rejected:teacher_contains_solution"] == 1  # Di's question states its answer
    assert rounds[2]["stopped"] == "max_rounds" and rounds[2]["rows"] == 0  # student-c gets every seed right
    rows = [r for r in read_records(out) if r["method"] == "llm2llm"]
    seed_ids = {r["id"] for r in read_records(out) if r["method"] == "seed"}
    assert rows and all(r["parent_ids"][0] in seed_ids for r in rows)
    assert all(r["verification"]["method"] == "agreement" and r["verification"]["votes"] == 2 for r in rows)
    roles = [r["generator"]["roles"] for r in rows]
    roles = [json.loads(x) if isinstance(x, str) else x for x in roles]
    assert all(x["student"]["model"].startswith("student-") and x["solver"]["model"] == "solver" for x in roles)
    card = (out / "README.md").read_text()
    assert "## Rounds" in card and "llm2llm.student_accuracy" in card
    asked = len(server.answered)
    run_build(rec, out, fresh=True)  # recomputes every batch: the request cache answers all of it
    assert len(server.answered) == asked


def test_stops_on_accuracy_target(server: Servers, tmp_path: Path) -> None:
    rec = recipe(tmp_path, server, students=["student_c"])
    result = run_build(rec, tmp_path / "out")
    rounds = result.manifest["rounds"]["llm2llm"]
    assert len(rounds) == 1 and "student_correct/student_total = 1 >= 0.99" in rounds[0]["stopped"]


def test_pause_for_student_without_prefect(server: Servers, tmp_path: Path) -> None:
    rec = recipe(tmp_path, server, pause_for_student=True)
    out = tmp_path / "out"
    with pytest.raises(RoundPaused) as caught:
        run_build(rec, out)
    message = str(caught.value)
    assert f"mathaug resume {out} --student PATH_OR_SERVED_NAME" in message
    need = caught.value.needs[0]
    assert need["key"] == "llm2llm.student@2" and need["round"] == 2
    train = [json.loads(line) for line in Path(need["dataset"]).read_text().splitlines()]
    assert need["rows"] == len(train) > len(SEEDS)  # the seeds and round 1's rows: what the student trains on
    students = server["student-a"]  # the student's server: it serves the trained checkpoint next (a served name)
    asked = len(students.answered)
    students.model = "student-b"
    record_round_inputs(out / ".mathaug", {"llm2llm.student@2": "student-b"})
    with pytest.raises(RoundPaused, match="round 2 is done"):
        run_build(rec, out)  # round 1 loaded from disk, round 2 with student-b; round 3 waits again
    round2 = students.answered[asked:]
    assert round2 and {b["model"] for b in round2} == {"student-b"}  # nothing of round 1 was asked again
    assert read_round_inputs(out / ".mathaug") == {"llm2llm.student@2": "student-b"}
    students.model = "student-c"
    record_round_inputs(out / ".mathaug", {"llm2llm.student@3": "student-c"})
    result = run_build(rec, out)
    assert [r["models"]["llm2llm"]["student"] for r in result.manifest["rounds"]["llm2llm"]] == [
        "student-a", "student-b", "student-c"]
