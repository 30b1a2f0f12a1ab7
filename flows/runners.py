"""The recipe's ``orchestration.task_runner`` → a Prefect task runner: threads, a Dask cluster or a Ray cluster.

Threads suit model stages (the engine or the HTTP client does the parallel work) and cost about 3-5 ms per task.
By default one batch runs at a time: CPU-bound stages gain nothing from threads (the GIL), and stage code need
not be thread-safe (CPython 3.11's ``ast.parse``, used by the symbolic stage, is not). Raise ``max_workers`` for
stages that mostly wait on a model server, so the next batch's requests start while the last one's tail finishes.
Dask and Ray spread CPU-bound stages (symbolic recomputation, verification) over processes and machines; each
task costs about 80-90 ms there, which is why a task is a whole batch of rows. Without ``address`` a local
cluster is started for the run and stopped after it; with one, the run joins that cluster (its workers must see
the same output directory, e.g. a shared volume, and have mathaug installed).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from pipeline.recipe import OrchestrationSpec

DEFAULT_THREADS = 1  # batches at a time with the thread runner (see above)
DEFAULT_PROCESSES = 4


class RunnerUnavailableError(RuntimeError):
    """The recipe asks for a runner whose package is not installed."""


def default_workers() -> int:
    return max(1, min(DEFAULT_PROCESSES, os.cpu_count() or 1))


def parallelism(spec: OrchestrationSpec) -> int:
    """How many batches the runner works on at once (a guess of 8 for a cluster of unknown size)."""
    if spec.task_runner == "thread":
        return spec.max_workers or DEFAULT_THREADS
    return spec.max_workers or (8 if spec.address else default_workers())


def make_task_runner(spec: OrchestrationSpec) -> TaskRunner[Any]:
    """A fresh, not yet started task runner for one build (enter it with ``with``)."""
    if spec.task_runner == "thread":
        return ThreadPoolTaskRunner(max_workers=spec.max_workers or DEFAULT_THREADS)
    if spec.task_runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:
            raise RunnerUnavailableError(
                "orchestration.task_runner: dask needs prefect-dask (pip install 'mathaug[scale]')"
            ) from exc
        logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines drown the build's own
        if spec.address:
            return DaskTaskRunner(address=spec.address)
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": spec.max_workers or default_workers(),
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": ":0",
            }
        )
    if spec.task_runner == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as exc:
            raise RunnerUnavailableError(
                "orchestration.task_runner: ray needs prefect-ray (pip install 'mathaug[scale]')"
            ) from exc
        if spec.address:
            return _ray_runner_with_engines(RayTaskRunner)(address=spec.address)
        return _ray_runner_with_engines(RayTaskRunner)(
            init_kwargs={
                "num_cpus": spec.max_workers or default_workers(),
                "include_dashboard": False,
                "log_to_driver": False,
                "object_store_memory": 256 * 1024 * 1024,
            }
        )
    raise ValueError(f"unknown task_runner {spec.task_runner!r}")


def _ray_runner_with_engines(base: type) -> type:
    """The Ray runner, removing the build's engine actors (pipeline/llm/workers.py: created by the first LLM
    batch that needs them, shared by all, detached so they outlive that task) when the build ends."""

    class RayRunnerWithEngines(base):  # type: ignore[misc, valid-type]
        def __exit__(self, *exc_info: Any) -> None:
            with contextlib.suppress(Exception):
                from pipeline.llm.workers import kill_engine_actors

                kill_engine_actors()
            super().__exit__(*exc_info)

    return RayRunnerWithEngines


def check_engine_layout(spec: OrchestrationSpec, models: dict[str, Any]) -> None:
    """Refuse engine workers on Dask, which has no GPU placement for them (Ray and threads have)."""
    if spec.task_runner != "dask":
        return
    for name, config in models.items():
        if getattr(config, "uses_engine_workers", False):
            raise ValueError(
                f"models.{name}.data_parallel_size/gpus: engine workers need task_runner thread or ray "
                "(orchestration.task_runner: dask runs CPU stages only)"
            )


def runs_in_process(spec: OrchestrationSpec) -> bool:
    """Whether batches share this process (threads): then they can report progress row by row."""
    return spec.task_runner == "thread"


@contextlib.contextmanager
def api_visible_to_workers(spec: OrchestrationSpec) -> Iterator[None]:
    """Let Dask/Ray worker processes report to the server this flow reports to.

    Without ``PREFECT_API_URL`` the flow talks to a temporary server known only to this process; a worker process
    would start a temporary server of its own and its task runs would never show in this run. Publish the
    temporary server's address (settings context, which Prefect ships to the workers, and the environment, which
    the workers inherit) while the runner is up.
    """
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    if runs_in_process(spec) or get_current_settings().api.url:
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the running temporary server of this process (a per-process singleton)
    server.start()
    url = server.api_url
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
