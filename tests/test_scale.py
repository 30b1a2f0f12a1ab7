"""Scale-out runners: the same small recipe on a local Dask cluster and a local Ray cluster gives the same dataset
as the thread runner, with one task run per batch recorded on the flow run's server."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.build import run_build
from pipeline.io.shards import read_records
from pipeline.recipe import load_recipe
from tests.fixtures.prefect import all_batches_covered, batches_covered, flow_run_task_names, small_recipe

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]
LIMIT = 24


def ids(out: Path) -> list[str]:
    return sorted(r["id"] for r in read_records(out))


@pytest.mark.parametrize("runner", ["dask", "ray"])
def test_runner_builds_the_same_dataset(runner: str, tmp_path: Path) -> None:
    pytest.importorskip(f"prefect_{runner}")
    from flows.build import build_dataset

    recipe = small_recipe(tmp_path, name=runner, orchestration={"task_runner": runner, "max_workers": 2})
    state = build_dataset(str(recipe), str(tmp_path / runner), limit=LIMIT, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    reference = run_build(load_recipe(recipe), tmp_path / "direct", limit=LIMIT)
    assert ids(tmp_path / runner) == ids(tmp_path / "direct")
    assert result.rows == reference.rows
    # the workers reported to this run's server: every batch is in a finished task run
    names = flow_run_task_names(
        state.state_details.flow_run_id, all_batches_covered(["symbolic", "entity_swap"])
    )
    for stage in ("symbolic", "entity_swap"):
        covered, total = batches_covered(names, stage)
        assert covered == list(range(1, total + 1)), names
    assert "symbolic · batch 1/3" in names and "symbolic · batch 2/3" in names  # probes, one per worker


def test_dask_workers_report_to_the_cli_temporary_server(tmp_path: Path) -> None:
    """Without PREFECT_API_URL the CLI's flow uses a temporary server; Dask workers must report to it, not start
    temporary servers of their own (their task runs would be lost and each start costs seconds)."""
    pytest.importorskip("prefect_dask")
    import os
    import subprocess
    import sys

    recipe = small_recipe(tmp_path, name="cli-dask", orchestration={"task_runner": "dask", "max_workers": 2})
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_LOGGING_LEVEL"] = "INFO"
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "build",
        str(recipe),
        "--out",
        str(tmp_path / "o"),
        "--limit",
        "12",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # mathaug runs the build's temporary server itself (flows/server.py, it dies with the build), so Prefect's own
    # "Starting temporary server" must appear nowhere: not in the CLI, and not in a Dask worker that failed to
    # find the build's server and started one of its own
    assert (done.stdout + done.stderr).count("Starting temporary server") == 0
    assert ids(tmp_path / "o")
