"""Deployments: `mathaug deploy` serves a schedule whose runs complete; prefect.yaml deploys to a work pool and a
worker runs it; docker-compose.yml validates where a compose CLI exists."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.prefect import REPO, small_recipe


@contextmanager
def api(url: str) -> Iterator[Any]:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        yield client


def deployment_runs(url: str, deployment: str) -> tuple[Any, list[Any]]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with api(url) as client:
        dep = client.read_deployment_by_name(deployment)
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
    return dep, runs


def cli_env(url: str | None) -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "300"}
    env.pop("PREFECT_API_URL", None)
    if url:
        env["PREFECT_API_URL"] = url
    return env


def test_deploy_needs_a_server_and_a_valid_schedule(tmp_path: Path) -> None:
    from flows.deploy import DeployError, make_schedule

    with pytest.raises(DeployError, match="exactly one"):
        make_schedule(None, None, None)
    with pytest.raises(DeployError, match="not a valid schedule"):
        make_schedule("0 2 * *", None, None)
    with pytest.raises(DeployError, match="not a valid schedule"):
        make_schedule("0 2 * * *", None, "Mars/Olympus")
    recipe = small_recipe(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "deploy", str(recipe), "--name", "x", "--cron", "0 2 * * *"],
        env=cli_env(None),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "no Prefect server configured" in done.stderr


@pytest.mark.slow
def test_served_deployment_runs_on_its_schedule(tmp_path: Path, scheduler_server: str) -> None:
    recipe = small_recipe(tmp_path, name="served", dedup=False)
    out = tmp_path / "served-{date}"
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "deploy",
        str(recipe),
        "--name",
        "every-5s",
        "--interval",
        "5",
        "--limit",
        "10",
        "--out",
        str(out),
    ]
    log = (tmp_path / "serve.log").open("w")
    env = {**cli_env(scheduler_server), "PREFECT_RUNNER_POLL_FREQUENCY": "2"}  # look for due runs every 2 s
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        completed: list[Any] = []
        while not completed and time.monotonic() < deadline:
            time.sleep(3)
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                dep, runs = deployment_runs(scheduler_server, "mathaug-build/every-5s")
            except Exception:  # not registered yet
                continue
            completed = [r for r in runs if r.state and r.state.is_completed() and r.auto_scheduled]
        assert completed, (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    # what the UI's run form offers: the flow's parameters, with this deployment's values as defaults
    props = dep.parameter_openapi_schema["properties"]
    assert {"recipe", "out", "limit", "resume", "fresh"} <= set(props)
    assert dep.parameters == {"recipe": str(recipe), "out": str(out), "limit": 10}
    assert dep.schedules and dep.schedules[0].schedule.interval.total_seconds() == 5
    written = list(tmp_path.glob("served-*/manifest.json"))
    assert len(written) == 1 and re.fullmatch(r"served-\d{4}-\d{2}-\d{2}", written[0].parent.name)


@pytest.mark.slow
def test_prefect_yaml_deploys_to_a_work_pool_and_a_worker_runs_it(
    tmp_path: Path, scheduler_server: str
) -> None:
    env = {**cli_env(scheduler_server), "PREFECT_WORKER_QUERY_SECONDS": "2"}
    prefect = [sys.executable, "-m", "prefect"]

    def run(*args: str, timeout: int = 120) -> str:
        done = subprocess.run(
            [*prefect, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, (
            f"prefect {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
        return done.stdout

    run("work-pool", "create", "mathaug", "--type", "process", "--overwrite")
    run("--no-prompt", "deploy", "--all")
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    for entry in spec["deployments"]:
        dep, _ = deployment_runs(scheduler_server, f"mathaug-build/{entry['name']}")
        assert dep.parameters == entry["parameters"] and dep.work_pool_name == "mathaug"
        assert dep.schedules[0].schedule.cron == entry["schedules"][0]["cron"]

    out = tmp_path / "pool-out"
    run(
        "deployment",
        "run",
        "mathaug-build/quickstart-nightly",
        "--param",
        "limit=10",
        "--param",
        f"out={out}",
    )
    run("worker", "start", "--pool", "mathaug", "--run-once", timeout=240)
    _, runs = deployment_runs(scheduler_server, "mathaug-build/quickstart-nightly")
    manual = [r for r in runs if not r.auto_scheduled]
    assert len(manual) == 1 and manual[0].state.is_completed(), manual[0].state
    assert (out / "manifest.json").exists()


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_file_validates() -> None:
    compose = _compose_command()
    if compose is None:
        pytest.skip("no docker compose CLI here (docker compose plugin or docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATHAUG_", "VLLM_", "POSTGRES_"))}
    done = subprocess.run(
        [*compose, "-f", str(REPO / "docker-compose.yml"), "config"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert {"postgres", "prefect-server", "vllm", "worker"} <= set(config["services"])
    assert {"datasets", "hf-cache", "postgres-data"} <= set(config["volumes"])
    assert (
        "postgresql+asyncpg://"
        in config["services"]["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    )
    assert any("--model=" in part for part in config["services"]["vllm"]["command"])


def test_worker_image_copies_only_what_exists() -> None:
    dockerfile = (REPO / "docker" / "worker.Dockerfile").read_text()
    sources = [
        src for line in dockerfile.splitlines() if line.startswith("COPY ") for src in line.split()[1:-1]
    ]
    assert sources and all((REPO / src).exists() for src in sources), sources
