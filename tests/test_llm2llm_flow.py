"""LLM2LLM's pause for a trained student through the real CLI: the Prefect flow pauses after round 1 with a
run-input form and `mathaug resume OUT --student NAME` resumes it through the run-input API; without Prefect
(--direct) the build stops with the exact command to run next and `mathaug resume` goes on. Nothing of round 1 is
asked again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.prefect import flow_run_artifacts
from tests.test_llm2llm_logic import STUDENT_SAYS, Servers, recipe_data, scripted_servers

MATHAUG = [sys.executable, "-m", "pipeline.cli"]


@pytest.fixture
def server() -> Any:
    yield from scripted_servers()


def write_recipe(tmp_path: Path, server: Servers) -> Path:
    path = tmp_path / "llm2llm.yaml"
    path.write_text(yaml.safe_dump(recipe_data(tmp_path, server, max_rounds=2, pause_for_student=True)))
    return path


def student_requests(server: Servers) -> list[str]:
    return [b["model"] for b in server["student-a"].answered if b["messages"][-1]["content"].startswith(STUDENT_SAYS)]


def test_flow_pauses_and_resume_gives_the_student(
    server: Servers, tmp_path: Path, prefect_subprocess_env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    env = {**prefect_subprocess_env, "MATHAUG_PAUSE_POLL_S": "1", "COLUMNS": "200"}
    build = subprocess.Popen([*MATHAUG, "build", str(write_recipe(tmp_path, server)), "-o", str(out)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    paused = out / ".mathaug" / "paused.json"
    deadline = time.monotonic() + 240
    while not paused.exists():
        assert build.poll() is None, build.communicate()[0]
        assert time.monotonic() < deadline, "the flow did not pause"
        time.sleep(0.5)
    state = json.loads(paused.read_text())
    assert state["round"] == 1 and state["needs"][0]["key"] == "llm2llm.student@2"
    train = Path(state["needs"][0]["dataset"])
    assert train.exists() and state["needs"][0]["rows"] == len(train.read_text().splitlines())
    from prefect import get_client

    with get_client(sync_client=True) as client:  # the UI's view: a paused run with a run-input form
        run = client.read_flow_run(state["flow_run_id"])
    assert run.state is not None and run.state.is_paused()
    round1 = student_requests(server)
    assert round1 and set(round1) == {"student-a"}
    server["student-a"].model = "student-b"  # the trained checkpoint, served under its own name
    resumed = subprocess.run([*MATHAUG, "resume", str(out), "--student", "student-b"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0 and "resumed flow run" in resumed.stderr, resumed.stderr
    output = build.communicate(timeout=240)[0]
    assert build.returncode == 0, output
    assert "mathaug resume" in output  # the CLI said how to give the student
    manifest = json.loads((out / "manifest.json").read_text())
    rounds = manifest["rounds"]["llm2llm"]
    assert [r["models"]["llm2llm"]["student"] for r in rounds] == ["student-a", "student-b"]
    assert student_requests(server)[: len(round1)] == round1
    assert set(student_requests(server)[len(round1):]) == {"student-b"}  # round 1 was not asked again
    assert not paused.exists()
    arts = flow_run_artifacts(state["flow_run_id"], expect={"mathaug-rounds"})
    assert "student-b" in json.dumps(arts["mathaug-rounds"].data)


def test_direct_build_stops_and_resume_goes_on(server: Servers, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "COLUMNS": "300"}
    first = subprocess.run([*MATHAUG, "build", str(write_recipe(tmp_path, server)), "-o", str(out), "--direct"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 3, first.stderr
    assert f"Then run: mathaug resume {out} --student PATH_OR_SERVED_NAME" in " ".join(first.stderr.split())
    assert not (out / "manifest.json").exists()
    asked = len(server["student-a"].answered)
    # the rerun checks the recipe's student before it starts: this server serves the old and the new checkpoint
    server["student-a"].also_serves = ("student-b",)
    resumed = subprocess.run([*MATHAUG, "resume", str(out), "--student", "student-b"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["models"]["llm2llm"]["student"] for r in manifest["rounds"]["llm2llm"]] == ["student-a", "student-b"]
    assert {b["model"] for b in server["student-a"].answered[asked:]} == {"student-b"}
    again = subprocess.run([*MATHAUG, "resume", str(out), "--student", "x"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 2 and "no build is waiting" in again.stderr
