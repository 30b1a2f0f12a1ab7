"""The build flow on a real (temporary) Prefect server: same rows as the plain build, artifacts, resume, retries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.build import BuildError, IncompatibleRunError, run_build
from pipeline.io.shards import read_records
from pipeline.recipe import load_recipe
from tests.fixtures.prefect import (
    all_batches_covered,
    batches_covered,
    flow_run_artifacts,
    flow_run_task_names,
    flow_runs_named,
    small_recipe,
)

pytestmark = pytest.mark.usefixtures("prefect_server")
LIMIT = 30


def rows_by_id(out: Path) -> dict[str, dict]:
    rows = {}
    for rec in read_records(out):
        assert rec["id"] not in rows, f"duplicate id {rec['id']}"
        rec.pop("created_at")
        rec.pop("run_id")
        rows[rec["id"]] = rec
    return rows


def test_flow_writes_the_same_rows_as_the_plain_build_and_shows_its_funnel(tmp_path: Path) -> None:
    from flows.build import build_dataset

    recipe = small_recipe(tmp_path)
    state = build_dataset(str(recipe), str(tmp_path / "flow"), limit=LIMIT, return_state=True)
    assert state.is_completed(), state
    result = state.result()
    direct = run_build(load_recipe(recipe), tmp_path / "direct", limit=LIMIT)
    assert result.rows == direct.rows > LIMIT
    assert rows_by_id(tmp_path / "flow") == rows_by_id(tmp_path / "direct")

    run_id = state.state_details.flow_run_id
    arts = flow_run_artifacts(run_id, expect={"mathaug-funnel", "mathaug-summary", "mathaug-progress"})
    funnel = {row["stage"]: row for row in json.loads(arts["mathaug-funnel"].data)}
    assert list(funnel) == ["seed", "symbolic", "entity_swap", "fobar", "total"]
    for column in ("in", "generated", "verified", "duplicates", "contaminated", "kept", "tokens", "seconds"):
        assert column in funnel["total"]
    assert funnel["seed"]["in"] == LIMIT
    assert funnel["total"]["kept"] == result.rows
    summary = arts["mathaug-summary"].data
    assert f"{result.rows:,} rows" in summary and "## Sample rows" in summary and "### symbolic" in summary
    assert f"**dropped**: {result.manifest['dropped']['rows']:,} rows" in summary
    assert float(arts["mathaug-progress"].data) == 100.0

    # tasks named after their stage and batches, each batch in exactly one task: the first batch of a stage
    # alone (it measures the stage's speed), the rest grouped into tasks of about TARGET_TASK_S
    names = flow_run_task_names(run_id, all_batches_covered(["symbolic", "entity_swap"]))
    assert "symbolic · batch 1/3" in names  # LIMIT seeds in batches of 10
    for stage in ("symbolic", "entity_swap"):
        covered, total = batches_covered(names, stage)
        assert covered == list(range(1, total + 1)), names
    assert len(names) < result.computed_batches  # these batches take milliseconds: grouped


def test_rerun_resumes_refuses_other_recipes_and_fresh_starts_over(tmp_path: Path) -> None:
    from flows.build import build_dataset, build_with_flow

    recipe, out = small_recipe(tmp_path, dedup=False), tmp_path / "out"
    first = build_with_flow(recipe, out, limit=LIMIT)
    before = rows_by_id(out)
    state = build_dataset(str(recipe), str(out), limit=LIMIT, return_state=True)
    again = state.result()
    assert (again.computed_batches, again.resumed_batches) == (0, first.computed_batches)
    assert again.run_id == first.run_id
    assert rows_by_id(out) == before
    names = flow_run_task_names(state.state_details.flow_run_id, lambda names: len(names) >= 3)
    assert len(names) == 3 and all(n.endswith("batches (on disk)") for n in names), names  # one task a stage

    with pytest.raises(IncompatibleRunError, match="limit"):
        build_with_flow(recipe, out, limit=LIMIT + 1)
    with pytest.raises(BuildError, match="already holds run"):
        build_with_flow(recipe, out, limit=LIMIT, resume=False)
    # the refusal holds inside the flow too (a deployment's run has no CLI in front of it)
    state = build_dataset(str(recipe), str(out), limit=LIMIT + 1, return_state=True)
    assert state.is_failed() and "differs in: limit" in state.message

    fresh = build_with_flow(recipe, out, limit=LIMIT + 1, fresh=True)
    assert fresh.computed_batches > 0 and fresh.resumed_batches == 0 and fresh.run_id != first.run_id


@pytest.fixture
def flaky_method(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.stages import REGISTRY

    monkeypatch.setitem(REGISTRY, "flaky", "tests.fixtures.flaky_stage")


@pytest.mark.usefixtures("flaky_method")
def test_transient_errors_are_retried_and_bugs_are_not(tmp_path: Path) -> None:
    from flows.build import build_dataset
    from tests.fixtures.flaky_stage import attempts

    def recipe_for(error: str) -> Path:
        markers = tmp_path / error
        stages = [
            {"method": "flaky", "params": {"marker_dir": str(markers), "fail_times": 1, "error": error}}
        ]
        return small_recipe(
            tmp_path, name=error, stages=stages, dedup=False, orchestration={"batch_retries": 2}
        )

    ok = build_dataset(str(recipe_for("transient")), str(tmp_path / "t"), limit=20, return_state=True)
    assert ok.is_completed(), ok.message
    assert sorted(attempts(tmp_path / "transient").values()) == [2, 2]  # two batches, each failed once
    assert ok.result().rows == 40

    bad = build_dataset(str(recipe_for("permanent")), str(tmp_path / "p"), limit=20, return_state=True)
    assert bad.is_failed() and "a bug in the stage" in bad.message
    assert set(attempts(tmp_path / "permanent").values()) == {1}  # no retry for a ValueError


def test_progress_artifact_moves_while_a_stage_runs(tmp_path: Path) -> None:
    from prefect import flow

    from flows.progress import FlowProgress
    from pipeline.build import Reporter

    seen: list[float] = []

    @flow
    def watch() -> None:
        from prefect import get_client

        progress = FlowProgress(Reporter(), ["symbolic"], min_interval=0)

        def current() -> float:
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

            only = ArtifactFilter(id=ArtifactFilterId(any_=[progress.artifact_id]))
            with get_client(sync_client=True) as client:
                return float(client.read_artifacts(artifact_filter=only)[0].data)

        progress.stage_started("symbolic", 100)
        for _ in range(4):
            progress.advance("symbolic", 25)
            seen.append(current())
        progress.stage_finished("symbolic")
        progress.stage_started("verify+dedup+write", 10)
        progress.advance("verify+dedup+write", 5)
        seen.append(current())

    watch()
    assert seen == [12.5, 25.0, 37.5, 50.0, 75.0]


def test_cli_build_runs_the_flow_on_the_configured_server(
    tmp_path: Path, prefect_subprocess_env: dict[str, str]
) -> None:
    recipe, out = small_recipe(tmp_path, name="cli", dedup=False), tmp_path / "cli-out"
    env = {**prefect_subprocess_env, "COLUMNS": "300"}  # rich wraps error messages at the terminal width
    cmd = [sys.executable, "-m", "pipeline.cli", "build", str(recipe), "--out", str(out), "--limit", "12"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting temporary server" not in done.stderr  # it used PREFECT_API_URL
    runs = flow_runs_named(f"cli → {out}")
    assert len(runs) == 1 and runs[0].state.is_completed()
    assert {"mathaug-funnel", "mathaug-summary"} <= set(flow_run_artifacts(runs[0].id, {"mathaug-funnel"}))

    refused = subprocess.run([*cmd, "--no-resume"], env=env, capture_output=True, text=True, timeout=240)
    assert refused.returncode == 2 and "already holds run" in refused.stderr
    assert len(flow_runs_named(f"cli → {out}")) == 1  # refused before any flow run started
    assert os.path.exists(out / "manifest.json")


def test_an_unreachable_server_is_reported_before_anything_runs(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.build import ServerUnreachableError, build_with_flow

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        with pytest.raises(ServerUnreachableError, match="does not answer.*--direct"):
            build_with_flow(small_recipe(tmp_path), tmp_path / "out", limit=5)
    assert not (tmp_path / "out").exists()


def test_task_names_and_grouping() -> None:
    from flows.build import TARGET_TASK_S, TaskMapper, task_name
    from pipeline.build import BatchJob, BatchResult
    from pipeline.recipe import StageSpec

    def job(index: int) -> BatchJob:
        return BatchJob(StageSpec(method="symbolic"), index, [], "k", Path("x"), "run", 0, Path("w"))

    assert task_name([job(2)], 20) == "symbolic · batch 3/20"
    assert task_name([job(3), job(4), job(5)], 20) == "symbolic · batches 4-6/20"
    assert task_name([job(3), job(4), job(6)], 20) == "symbolic · batches 4-5, 7/20"
    assert task_name([job(0), job(7)], 20, on_disk=True) == "symbolic · 2 of 20 batches (on disk)"

    mapper = TaskMapper.__new__(TaskMapper)
    probe = BatchResult("symbolic", 0, Path("x"), 10, {}, False, seconds=TARGET_TASK_S / 4)
    mapper.workers = 1
    assert mapper.group_size(probe, remaining=10) == 4  # about TARGET_TASK_S of work per task
    assert mapper.group_size(probe, remaining=3) == 3
    slow = BatchResult("symbolic", 0, Path("x"), 10, {}, False, seconds=TARGET_TASK_S * 3)
    assert mapper.group_size(slow, remaining=10) == 1  # a slow batch is a task of its own
    mapper.workers = 4
    assert mapper.group_size(probe, remaining=16) == 2  # two tasks per worker at least


def test_the_temporary_server_waits_longer_and_skips_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    from flows.build import HEARTBEAT_ENV, TEMPORARY_SERVER_TIMEOUT_S, _temporary_server_settings

    for name in (*HEARTBEAT_ENV, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    default_heartbeat = PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value()
    assert default_heartbeat is not None
    with temporary_settings(updates={PREFECT_API_URL: None}):
        with _temporary_server_settings():  # a temporary server: it dies with the build
            assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is None
            assert PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value() >= TEMPORARY_SERVER_TIMEOUT_S
        monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "60")
        with _temporary_server_settings():  # the user's choice stands
            assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() == 60
    with _temporary_server_settings():  # a running server (the fixture's PREFECT_API_URL): nothing changes
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() == default_heartbeat
