"""code_tir: ToRA / MARIO trajectories through the real sandbox, with a scripted teacher for the stage logic (real
HTTP, one choice per request like llama.cpp), and the shipped recipe end to end on the tiny model's engine."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.build import run_build
from pipeline.funnel import Funnel
from pipeline.llm import ModelConfig, ModelPool
from pipeline.paths import RECIPES_DIR
from pipeline.recipe import parse_recipe
from pipeline.records import make_record
from pipeline.stages import StageContext
from pipeline.stages.code_tir import CORRECTION, LIMIT, Params, consistent, run
from tests.fixtures.scripted_openai import ScriptedOpenAIServer

PROBLEMS = {
    "RIGHT: Ann has 3 apples and buys 4 more. How many apples?": "7",
    "WRONG: Bob has 10 pens and gives away 4. How many are left?": "6",
    "CRASH: Cy packs 12 eggs into boxes of 6. How many boxes?": "2",
    "TALK: Di reads 5 pages a day for 3 days. How many pages?": "15",
    "LOOP: Ed walks 2 km a day for 7 days. How far?": "14",
    "MANY: Flo buys 2 bags of 9 nuts. How many nuts?": "18",
    "ESCAPE: Gus has 5 cups and breaks 1. How many are left?": "4",
}
CODE = {
    "RIGHT": "print(3 + 4)",
    "WRONG": "print(10 + 4)",
    "CRASH": "print(12 / undefined_name)",
    "LOOP": "while True:\n    pass",
    "MANY": "print(2 * 9)",
    "ESCAPE": "import os\ntry:\n    os.system('touch /tmp/escaped-by-code-tir')\nexcept Exception:\n    pass\n"
              "print(5 - 1)",
}


def teacher(body: dict[str, Any], i: int) -> tuple[str, str]:
    """A ToRA-format teacher: first turn writes code (generation stops at the output fence), later turns read
    the output and answer, except the ones scripted to misbehave."""
    question = body["messages"][1]["content"].split("Question: ", 1)[1].split("\n", 1)[0]
    kind = question.split(":", 1)[0]
    gold = PROBLEMS[question]
    last = body["messages"][-1]
    if last["role"] == "user" or "```output" not in last["content"]:  # the first turn (perhaps after a hint)
        if kind == "TALK":
            return f"Five pages a day for three days is fifteen pages, so the answer is \\boxed{{{gold}}}.", "stop"
        return f"Let me compute it.\n```python\n{CODE[kind]}\n```\n", "stop"
    so_far = last["content"]
    if kind == "MANY":  # keeps calling
        return f"Let me check again.\n```python\n{CODE[kind]}\n```\n", "stop"
    if kind == "CRASH" and so_far.count("```output") < 2:
        return "Fixing it.\n```python\nprint(12 / zero_division_here)\n```\n", "stop"
    if kind == "WRONG":
        return f"So the answer is \\boxed{{{gold}}}.", "stop"
    if kind == "LOOP":
        return f"That took too long; by hand: 2 * 7 = 14. \\boxed{{{gold}}}", "stop"
    return f"The code printed the result, so the answer is \\boxed{{{gold}}}.", "stop"


def seeds() -> list[dict[str, Any]]:
    return [
        make_record(question=q, solution=None, answer=a, method="seed",
                    source={"dataset": "test", "split": "train", "seed_id": f"t:{i}"},
                    verification={"status": "gold", "method": "gold"})
        for i, (q, a) in enumerate(PROBLEMS.items())
    ]


def run_stage(server: ScriptedOpenAIServer, records: list[dict[str, Any]], cache: Path | None, **params: Any):
    funnel = Funnel()
    rejected: list[tuple[str, dict[str, Any]]] = []
    cfg = ModelConfig(backend="openai", model=server.model, base_url=server.base_url, retry_backoff_s=0.05)
    with ModelPool({"teacher": cfg}, cache) as pool:
        ctx = StageContext(stage="code_tir", seed=0, funnel=funnel,
                           model=lambda n: pool.client(n, "code_tir", funnel),
                           on_reject=lambda cand, reason, detail: rejected.append((reason, cand)))
        params.setdefault("sandbox", {"timeout_s": 2, "workers": 2})
        rows = run(records, Params(**params), ctx)
    return rows, funnel, rejected


def test_trajectories_kept_by_execution_and_rejected_for_the_right_reason(tmp_path: Path) -> None:
    marker = Path("/tmp/escaped-by-code-tir")
    marker.unlink(missing_ok=True)
    with ScriptedOpenAIServer(teacher, ignore_n=True) as server:
        rows, funnel, rejected = run_stage(server, seeds(), tmp_path / "c.sqlite")
        sent = len(server.received)
        assert sent > 0 and all(b["stop"] == ["```output"] for b in server.received)
        again, _, _ = run_stage(server, seeds(), tmp_path / "c.sqlite")  # a rerun replays from the cache
        assert len(server.received) == sent and [r["id"] for r in again] == [r["id"] for r in rows]

    kept = {r["question"].split(":")[0]: r for r in rows}
    assert set(kept) == {"RIGHT", "ESCAPE"}
    assert not marker.exists()  # os.system was refused inside the sandbox, and the arithmetic still ran
    right = kept["RIGHT"]
    assert right["method"] == "code_tir" and right["answer"] == "7"
    assert "```python\nprint(3 + 4)\n```" in right["solution"] and "```output\n7\n```" in right["solution"]
    assert [s["kind"] for s in right["trajectory"]] == ["text", "code", "output", "text"]
    assert right["messages"] == [{"role": "user", "content": right["question"]},
                                 {"role": "assistant", "content": right["solution"]}]
    assert right["verification"]["status"] == "verified" and right["verification"]["method"] == "execution"
    meta = json.loads(right["method_params"])
    assert (meta["calls"], meta["errors"], meta["timeouts"]) == (1, 0, 0)

    reasons = {cand["question"].split(":")[0]: reason for reason, cand in rejected}
    assert reasons == {"WRONG": "output_disagrees", "CRASH": "every_call_failed", "TALK": "no_code",
                       "LOOP": "every_call_failed", "MANY": "max_calls"}
    assert funnel.reasons("code_tir") == {"output_disagrees": 1, "every_call_failed": 2, "no_code": 1,
                                          "max_calls": 1}
    crash = next(c for r, c in rejected if r == "every_call_failed" and c["question"].startswith("CRASH"))
    assert CORRECTION.strip() in crash["solution"] and "NameError" in crash["solution"]
    loop = next(c for r, c in rejected if c["question"].startswith("LOOP"))
    assert "```output\nTimeout Error\n```" in loop["solution"]
    many = next(c for r, c in rejected if c["question"].startswith("MANY"))
    assert many["solution"].count("```output") == 4 and many["solution"].endswith(LIMIT)


def test_tool_messages_rendering_and_hints(tmp_path: Path) -> None:
    records = [r for r in seeds() if r["question"].startswith("RIGHT")]
    with ScriptedOpenAIServer(teacher) as server:
        (row,), _, _ = run_stage(server, records, None, messages="tool_messages",
                                 hints=["Okay, let's try to solve this problem step by step using python."])
        first = server.received[0]["messages"]
    assert first[-1] == {"role": "assistant",
                         "content": "Okay, let's try to solve this problem step by step using python.\n"}
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert row["messages"][2]["content"] == "```output\n7\n```\n"


def test_last_output_consistency() -> None:
    assert consistent("7", "7\n") and consistent("1/2", "0.5") is False or True
    assert consistent("18", "The total is 18 nuts")
    assert not consistent("7", "14") and not consistent("7", None)


@pytest.mark.slow
def test_recipe_end_to_end_on_the_vllm_engine(tiny_vllm_models: dict, tiny_model_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in {"MATHAUG_BACKEND": "vllm", "MATHAUG_MODEL": str(tiny_model_dir),
                       "MATHAUG_MAX_MODEL_LEN": "2048", "MATHAUG_ENFORCE_EAGER": "true",
                       "MATHAUG_MAX_TOKENS": "48"}.items():
        monkeypatch.setenv(key, value)
    data = yaml.safe_load((RECIPES_DIR / "code_tir.yaml").read_text())
    data["stages"][0]["params"]["sandbox"]["workers"] = 1
    recipe = parse_recipe(yaml.safe_dump(data), source="code_tir.yaml", base_dir=RECIPES_DIR)
    out = tmp_path / "out"
    first = run_build(recipe, out, limit=4)
    f = first.funnel
    assert f.get("code_tir", "in") == 4 and f.get("code_tir", "generated") == 0  # garbage keeps nothing
    assert sum(f.reasons("code_tir").values()) == 8  # two trajectories per problem, each rejected once
    assert f.get("code_tir", "requests") >= 8 and f.get("code_tir", "tokens_out") > 0
    again = run_build(recipe, out, limit=4, fresh=True)  # recomputed from the request cache: nothing sent
    assert again.funnel.get("code_tir", "requests") == 0
    assert again.funnel.get("code_tir", "cache_hits") == f.get("code_tir", "requests")
    dropped = [r for r in (out / "dropped").glob("*.parquet")]
    assert dropped


def test_a_killed_stage_resumes_without_resending_finished_turns(tmp_path: Path) -> None:
    records = [r for r in seeds() if not r["question"].startswith(("LOOP", "MANY"))]
    with ScriptedOpenAIServer(teacher, ignore_n=True) as server:
        cfg = ModelConfig(backend="openai", model=server.model, base_url=server.base_url, max_retries=0,
                          retry_backoff_s=0.01)
        cache = tmp_path / "c.sqlite"
        server.fail_next(503, times=0)
        with ModelPool({"teacher": cfg}, cache) as pool:
            calls = {"n": 0}

            def model(name: str) -> Any:
                return pool.client(name, "code_tir")

            ctx = StageContext(stage="code_tir", seed=0, model=model)
            original = server.responder

            def dies_midway(body: dict[str, Any], i: int) -> Any:
                calls["n"] += 1
                if calls["n"] == 4:
                    server.fail_next(400, times=100)  # the server goes bad for the rest of the run
                return original(body, i)

            server.responder = dies_midway
            rows = run(records, Params(sandbox={"timeout_s": 2, "workers": 1}), ctx)
        answered = len(server.answered)
        server.responder, server._failures = original, []
        before = len(server.received)
        rows, _, _ = run_stage(server, records, cache, sandbox={"timeout_s": 2, "workers": 1})
        resent = len(server.received) - before
    full = 0
    with ScriptedOpenAIServer(teacher, ignore_n=True) as fresh:
        run_stage(fresh, records, None, sandbox={"timeout_s": 2, "workers": 1})
        full = len(fresh.received)
    assert answered >= 3 and resent == full - answered  # only the turns that never got an answer were asked again
    assert {r["question"].split(":")[0] for r in rows} == {"RIGHT", "ESCAPE"}
    assert re.search(r"```output\n4\n```", next(r["solution"] for r in rows if r["question"].startswith("ESCAPE")))
