"""The Prefect flow for a recipe: the same ``pipeline.build.run_build``, with each stage batch as a task.

Only ``flows/`` imports Prefect. A task is one batch of (by default) a thousand rows, never one row: Prefect's
per-task cost (3-5 ms with threads, 80-90 ms with Dask or Ray) then stays negligible. The batch output files
under ``OUT/.mathaug/stages`` are the record of progress, so a retried or re-run task that finds its file just
loads it, and a killed run resumes where it stopped. ``mathaug build`` and scheduled deployments both run this
flow, so what the CLI does is what the UI shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner

from flows import progress as progress_state
from flows.artifacts import (
    FUNNEL_KEY,
    REPORT_KEY,
    SUMMARY_KEY,
    funnel_table,
    report_markdown,
    sample_rows,
    summary_markdown,
)
from flows.progress import FlowProgress
from flows.rounds import ROUNDS_KEY, round_hook
from flows.runners import api_visible_to_workers, check_engine_layout, make_task_runner, parallelism
from flows.server import temporary_server
from pipeline.build import (
    BatchJob,
    BatchResult,
    BuildError,
    BuildResult,
    Reporter,
    check_run_dir,
    run_batch,
    run_build,
)
from pipeline.io.card import rounds_table
from pipeline.io.rundir import run_lock
from pipeline.recipe import Recipe, load_recipe, resolve_recipe_path

# Seconds `mathaug build` waits for its temporary Prefect server to start (Prefect's default is 20; a first
# start creates the database, which took 100 s with the 2 cores shared by a dozen processes).
TEMPORARY_SERVER_TIMEOUT_S = 180
# A task is at least about this much work (seconds) when batches are cheap: see TaskMapper.
TARGET_TASK_S = 2.0
# Waits between attempts of a failed batch (the last one repeats when retries are many).
RETRY_DELAYS = (2, 15, 60)
# Environment variables that set Prefect's flow-run heartbeat (the second is its legacy name).
HEARTBEAT_ENV = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")


def is_transient(exc: BaseException | None) -> bool:
    """Errors worth another attempt: an unreachable model server, timeouts, dropped connections.

    A bug in a stage or a bad recipe fails the same way every time: retrying it only delays the error.
    """
    from pipeline.llm.errors import BackendUnavailableError

    return isinstance(exc, (BackendUnavailableError, TimeoutError, ConnectionError))


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    return is_transient(state.data if isinstance(state.data, BaseException) else None)


class Batch:
    """Consecutive ``BatchJob``s of one stage as a task argument, opaque on purpose.

    Prefect walks task arguments looking for futures (about 0.3 ms per row: a third of a second for a batch of
    a thousand rows) and Dask rewrites tuples inside them; neither looks inside a plain object.
    """

    __slots__ = ("jobs",)

    def __init__(self, jobs: list[BatchJob]) -> None:
        self.jobs = jobs

    def __repr__(self) -> str:
        return f"Batch({self.jobs[0].label}..{self.jobs[-1].index:05d}, {sum(j.size for j in self.jobs)} rows)"


def run_stage_batches(batch: Batch) -> list[BatchResult]:
    """A stage over consecutive batches of rows; each batch's atomically written file marks it done, so a retry
    of the task loads the batches an earlier attempt finished.

    A plain module-level function (the task wraps it) so Dask and Ray pickle it by reference.
    """
    progress = progress_state.current_progress()
    results = []
    for job in batch.jobs:
        if progress is None:
            results.append(run_batch(job))
            continue
        progress.job_started(job)
        results.append(run_batch(job, advance=lambda n, job=job: progress.job_advance(job, n)))
    return results


stage_batch = task(
    run_stage_batches,
    name="stage-batch",
    retries=2,
    retry_delay_seconds=list(RETRY_DELAYS[:2]),
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)


def batch_on_disk(job: BatchJob) -> bool:
    return job.out_path.exists() and job.out_path.with_suffix(".json").exists()


def task_name(jobs: list[BatchJob], total: int, on_disk: bool = False) -> str:
    """``symbolic · batch 3/20``, ``symbolic · batches 4-9/20`` (1-based), ``symbolic · 12 of 20 batches (on
    disk)``: what the UI's task list and timeline show."""
    stage = jobs[0].stage.stage_name
    if on_disk:
        return f"{stage} · {len(jobs)} of {total} batches (on disk)"
    spans: list[list[int]] = []
    for number in (job.index + 1 for job in jobs):
        if spans and spans[-1][1] == number - 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    if len(jobs) == 1:
        return f"{stage} · batch {jobs[0].index + 1}/{total}"
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)
    return f"{stage} · batches {text}/{total}"


class TaskMapper:
    """``map_batches`` for ``run_build``: runs a stage's batches as Prefect tasks and waits, moving progress.

    A task is at least about ``TARGET_TASK_S`` of work: the first batches run one per task and show how long a
    batch takes; the rest are grouped into tasks of that length (never fewer tasks than twice the runner's
    parallelism). So Prefect's cost per task (a few ms here, events and a database row on the server) stays a
    small share whatever the batch size, and a run of thousands of cheap batches does not flood the server.
    Batches already on disk (a resumed run) are loaded by a single task. Each batch still has its own file.
    """

    def __init__(self, runner: TaskRunner[Any], recipe: Recipe, progress: FlowProgress) -> None:
        self.runner = runner
        self.progress = progress
        orch = recipe.orchestration
        retries = orch.batch_retries
        delays = [RETRY_DELAYS[min(i, len(RETRY_DELAYS) - 1)] for i in range(retries)]
        options: dict[str, Any] = {"retries": retries, "retry_delay_seconds": delays or 0}
        timeout = getattr(orch, "batch_timeout_s", None)
        if timeout:
            options["timeout_seconds"] = timeout
        self.task = stage_batch.with_options(**options)
        self.workers = parallelism(orch)
        self.tasks_submitted = 0

    def group_size(self, probe: BatchResult, remaining: int) -> int:
        """Batches per task for the rest of a stage, from one batch's measured time."""
        per_batch = probe.seconds if probe.seconds > 0 else 0.0
        size = remaining if per_batch == 0 else max(1, int(TARGET_TASK_S / per_batch))
        if self.workers > 1:  # keep every worker busy: at least two tasks per worker
            size = min(size, max(1, -(-remaining // (2 * self.workers))))
        return max(1, min(size, remaining))

    def __call__(self, jobs: list[BatchJob], reporter: Reporter) -> list[BatchResult]:
        if not jobs:
            return []
        total = len(jobs)
        on_disk = [job for job in jobs if batch_on_disk(job)]
        todo = [job for job in jobs if not batch_on_disk(job)]
        get_run_logger().info(
            "stage %s: %s rows in %d batch%s%s",
            jobs[0].stage.stage_name,
            f"{sum(job.size for job in jobs):,}",
            total,
            "" if total == 1 else "es",
            f" ({len(on_disk)} already on disk from an earlier attempt: loaded, not recomputed)"
            if on_disk
            else "",
        )
        done: queue.SimpleQueue[PrefectFuture[list[BatchResult]]] = queue.SimpleQueue()
        pending: dict[PrefectFuture[list[BatchResult]], list[BatchJob]] = {}

        def submit(group: list[BatchJob], loaded: bool = False) -> None:
            named = self.task.with_options(task_run_name=task_name(group, total, loaded))
            future = self.runner.submit(named, parameters={"batch": Batch(group)})
            future.add_done_callback(done.put)
            pending[future] = group
            self.tasks_submitted += 1

        if on_disk:
            submit(on_disk, loaded=True)
        probes, rest = todo[: self.workers], todo[self.workers :]
        for job in probes:
            submit([job])
        results: list[BatchResult] = []
        while pending:
            try:
                future = done.get(timeout=self.progress.min_interval)
            except queue.Empty:
                self.progress.flush()
                continue
            group = pending.pop(future)
            finished = future.result()  # raises the batch's error once its retries are spent
            results.extend(finished)
            for job in group:
                self.progress.job_finished(job)
            if rest and any(group[0] is probe for probe in probes):
                size = self.group_size(finished[0], len(rest))
                for start in range(0, len(rest), size):
                    submit(rest[start : start + size])
                rest = []
        return results


def _run_name() -> str:
    """``<recipe stem> → <out>`` (with ``{date}`` filled in): says at a glance which build a run is."""
    params = flow_run.parameters
    out = str(params.get("out", "?")).replace("{date}", datetime.now(timezone.utc).strftime("%Y-%m-%d"))
    return f"{Path(str(params.get('recipe', 'recipe'))).stem} → {out}"


def expand_out(out: str, now: datetime | None = None) -> Path:
    """``{date}`` in ``out`` becomes today's UTC date, so a nightly deployment writes one directory a day (and a
    rerun on the same day resumes it)."""
    now = now or datetime.now(timezone.utc)
    return Path(out.replace("{date}", now.strftime("%Y-%m-%d"))).expanduser().resolve()


@flow(name="mathaug-build", flow_run_name=_run_name)
def build_dataset(
    recipe: str,
    out: str,
    limit: int | None = None,
    resume: bool = True,
    fresh: bool = False,
    skip_bad_rows: bool = False,
) -> BuildResult:
    """Build (or resume) the dataset of a recipe.

    Args:
        recipe: path of the recipe YAML (on the machine that runs the flow).
        out: output directory; `{date}` in it becomes today's date (UTC).
        limit: use only the first N seed rows (empty: all).
        resume: continue the run already in `out` (a different recipe there is refused); off: refuse any run there.
        fresh: discard the run in `out` and start over.
        skip_bad_rows: count and skip malformed seed rows instead of failing.
    """
    logger = get_run_logger()
    parsed = load_recipe(recipe)
    out_dir = expand_out(out)
    previous = check_run_dir(parsed, out_dir, limit, fresh=fresh, resume=resume)
    orch = parsed.orchestration
    check_engine_layout(orch, parsed.models)
    logger.info(
        "%s %s (recipe %s) in %s with the %s task runner",
        "resuming run " + previous["run_id"] if previous else "new run of",
        parsed.name,
        parsed.fingerprint(),
        out_dir,
        orch.task_runner + (f" at {orch.address}" if orch.address else ""),
    )
    progress = FlowProgress(progress_state.caller_reporter(), [s.stage_name for s in parsed.stages])
    token = progress_state.set_current_progress(progress)
    try:
        with run_lock(out_dir), api_visible_to_workers(orch), make_task_runner(orch) as runner:
            mapper = TaskMapper(runner, parsed, progress)
            result = run_build(
                parsed,
                out_dir,
                limit=limit,
                fresh=fresh,
                resume=resume,
                skip_bad_rows=skip_bad_rows,
                reporter=progress,
                map_batches=mapper,
                on_round=round_hook(out_dir, progress),
            )
    finally:
        progress_state.reset_current_progress(token)
    progress.finish(f"done: {result.rows:,} rows in {len(result.manifest.get('shards', []))} shard(s)")
    seeds_in = int(result.funnel.get("seed", "in"))
    made = sum(int(result.funnel.get(s, "generated")) for s in result.funnel.stages() if s != "seed")
    create_table_artifact(
        key=FUNNEL_KEY,
        table=funnel_table(result.funnel),
        description=f"**{parsed.name}**: {result.rows:,} rows kept of {seeds_in:,} seeds + {made:,} generated. "
        "Per stage: rows read (in), made, rejected while making, verified/failed, removed as duplicates or "
        f"benchmark overlaps (contaminated), kept; model tokens and seconds. Run `{result.run_id}`.",
    )
    create_markdown_artifact(
        key=SUMMARY_KEY,
        markdown=summary_markdown(
            parsed.name, result, sample_rows(result.out_dir, methods=result.manifest.get("methods"))
        ),
        description=f"{result.rows:,} rows in {result.out_dir / 'data'}: how to load them, the funnel, sample rows",
    )
    if result.manifest.get("rounds"):
        create_table_artifact(key=ROUNDS_KEY, table=rounds_table(result.manifest["rounds"]),
                              description="per round: changing models, counters, rows made and kept in the dataset")
    if (report := report_markdown(result.out_dir)) is not None:
        create_markdown_artifact(key=REPORT_KEY, markdown=report, description="quality report: key figures")
    logger.info(
        "wrote %s rows to %s (%s batches computed, %s resumed)",
        f"{result.rows:,}",
        result.out_dir / "data",
        result.computed_batches,
        result.resumed_batches,
    )
    return result


def build_with_flow(
    recipe: str | Path,
    out: Path,
    *,
    limit: int | None = None,
    fresh: bool = False,
    skip_bad_rows: bool = False,
    reporter: Reporter | None = None,
    resume: bool = True,
) -> BuildResult:
    """Run the flow in this process (a temporary local Prefect server unless PREFECT_API_URL is set).

    A directory the build would refuse is refused here first, before any server starts.
    """
    recipe = resolve_recipe_path(recipe)
    out_dir = expand_out(str(out))
    check_run_dir(load_recipe(recipe), out_dir, limit, fresh=fresh, resume=resume)
    check_api_reachable()
    token = progress_state.set_caller_reporter(reporter)
    try:
        with run_lock(out_dir), _temporary_server_settings(), _temporary_server(), _no_tracebacks_for_expected():
            return build_dataset(
                str(recipe), str(out), limit=limit, resume=resume, fresh=fresh, skip_bad_rows=skip_bad_rows
            )
    finally:
        progress_state.reset_caller_reporter(token)


class ServerUnreachableError(BuildError):
    """PREFECT_API_URL names a server that does not answer."""


def check_api_reachable(timeout: float = 10.0) -> None:
    """Fail in seconds, with what to do, when PREFECT_API_URL points at a server that is down."""
    import httpx
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        return
    try:
        httpx.get(url.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except httpx.HTTPError as exc:
        raise ServerUnreachableError(
            f"the Prefect server at PREFECT_API_URL={url} does not answer ({exc.__class__.__name__}). Start it "
            "(`prefect server start`), unset PREFECT_API_URL to use a temporary server for this build, or build "
            "without Prefect (--direct)."
        ) from None


@contextlib.contextmanager
def _temporary_server() -> Iterator[None]:
    """No PREFECT_API_URL: run this build's own temporary server (``flows.server``: it dies with this process,
    even on SIGKILL) and point this process and its workers at it."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        get_current_settings,
        temporary_settings,
    )

    if get_current_settings().api.url:
        yield
        return
    with temporary_server(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()) as url:
        previous = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = url  # Dask/Ray workers inherit it
        try:
            with temporary_settings(updates={PREFECT_API_URL: url}):
                yield
                _drain_to_server()  # not after an error or a signal: stopping fast matters more then
        finally:
            if previous is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = previous


class _ExpectedErrorFilter(logging.Filter):
    """Drops the traceback from a console log record whose error is an expected failure (a full disk, a model
    server gone, a bad seed row): the CLI prints it as one line. A bug keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pipeline.io.seeds import SeedError
        from pipeline.llm.errors import LLMError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (OSError, BuildError, SeedError, LLMError)):
            record.exc_info, record.exc_text = None, None
        return True


@contextlib.contextmanager
def _no_tracebacks_for_expected() -> Iterator[None]:
    """While the CLI runs the flow: Prefect's console handler (on the root logger) shows expected errors without
    their traceback."""
    handlers = logging.getLogger().handlers
    quiet = _ExpectedErrorFilter()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def _drain_to_server(timeout_s: float = 10.0) -> None:
    """Send the logs and events still queued before the server stops; else Prefect retries them at exit for a
    minute and prints "Error logging to API"."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout_s)


@contextlib.contextmanager
def _temporary_server_settings() -> Iterator[None]:
    """Settings for a build on the temporary server (no PREFECT_API_URL), unless the user chose them.

    - Startup timeout: Prefect waits 20 s for the temporary server, then fails the build; measured here: 8-11 s
      idle, over 20 s with the cores shared. We wait up to ``TEMPORARY_SERVER_TIMEOUT_S``.
    - Flow-run heartbeats off: they let a long-lived server mark a crashed run as crashed, but the temporary
      server dies with this process, so nobody could see that. Prefect's heartbeat thread sleeps in 1 s steps and
      is joined when the flow ends: up to a second of idle wait per build, for nothing.
    """
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        get_current_settings,
        temporary_settings,
    )

    if get_current_settings().api.url:  # a running server: its settings are the user's business
        yield
        return
    updates: dict[Any, Any] = {}
    if "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" not in os.environ:
        timeout = max(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), TEMPORARY_SERVER_TIMEOUT_S)
        updates[PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS] = timeout
    if not any(name in os.environ for name in HEARTBEAT_ENV):
        updates[PREFECT_FLOWS_HEARTBEAT_FREQUENCY] = None
    with temporary_settings(updates=updates):
        yield
