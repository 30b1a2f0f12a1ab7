"""Progress of a flow run: the caller's bars (CLI) plus a Prefect progress artifact that moves during a stage.

Rows are counted where they are processed when batches run in threads (row by row), and when a batch completes
when they run in other processes (Dask, Ray): a reporter cannot cross processes. The artifact is updated from the
flow's own thread only, at most once per ``min_interval`` seconds, so it never costs more than a few API calls a
second whatever the row rate.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import defaultdict
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from pipeline.build import BatchJob, Reporter

FINAL_STEP = "verify+dedup+write"
PROGRESS_KEY = "mathaug-progress"

# Context variables live here, not in flows.build: Dask and Ray pickle the flow function by value, and a
# module-level ContextVar among its globals cannot be pickled.
# The CLI's progress bars live in the calling process; the flow finds them here.
_caller: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("mathaug_reporter", default=None)
# Set in the flow's thread; thread-runner tasks inherit it (Prefect copies the context), other processes do not.
_current: contextvars.ContextVar[FlowProgress | None] = contextvars.ContextVar(
    "mathaug_progress", default=None
)


def caller_reporter() -> Reporter | None:
    return _caller.get()


def set_caller_reporter(reporter: Reporter | None) -> contextvars.Token[Reporter | None]:
    return _caller.set(reporter)


def reset_caller_reporter(token: contextvars.Token[Reporter | None]) -> None:
    _caller.reset(token)


def current_progress() -> FlowProgress | None:
    return _current.get()


def set_current_progress(progress: FlowProgress | None) -> contextvars.Token[FlowProgress | None]:
    return _current.set(progress)


def reset_current_progress(token: contextvars.Token[FlowProgress | None]) -> None:
    _current.reset(token)


class FlowProgress(Reporter):
    """A ``Reporter`` that forwards to ``inner`` and keeps the run's progress artifact current."""

    def __init__(self, inner: Reporter | None, stages: list[str], min_interval: float = 2.0) -> None:
        self.inner = inner or Reporter()
        self.steps = [*stages, FINAL_STEP]
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._owner = threading.get_ident()
        self._totals: dict[str, int] = {}
        self._done: dict[str, int] = defaultdict(int)
        self._per_job: dict[str, int] = defaultdict(int)
        self._current: str | None = None
        self._last_push = 0.0
        self._last_sent: tuple[float, str] | None = None
        self.artifact_id: UUID | None = None
        self.updates = 0
        try:
            self.artifact_id = create_progress_artifact(
                progress=0.0, key=PROGRESS_KEY, description="loading seeds"
            )
        except Exception:  # progress display must never fail a build
            self.artifact_id = None

    # --- Reporter -----------------------------------------------------------------------------------------

    def stage_started(self, stage: str, total: int) -> None:
        self.inner.stage_started(stage, total)
        if stage == FINAL_STEP and threading.get_ident() == self._owner:
            # no task runs for this step (it streams in the flow itself): say in the log what the time is for
            try:
                get_run_logger().info(
                    "verify, deduplicate, decontaminate and write shards: %s rows from seeds and stages",
                    f"{total:,}",
                )
            except Exception:  # outside a flow run there is no run logger; the message is only a courtesy
                pass
        with self._lock:
            self._totals[stage] = total
            self._done[stage] = 0
            self._current = stage
        self.flush(force=True)

    def advance(self, stage: str, n: int = 1) -> None:
        self.inner.advance(stage, n)
        with self._lock:
            self._done[stage] += n
        if threading.get_ident() == self._owner:
            self.flush()

    def stage_finished(self, stage: str) -> None:
        self.inner.stage_finished(stage)
        with self._lock:
            self._done[stage] = self._totals.get(stage, self._done[stage])
        self.flush(force=True)

    def message(self, text: str) -> None:
        self.inner.message(text)

    # --- batches ------------------------------------------------------------------------------------------

    def job_started(self, job: BatchJob) -> None:
        """A (re)try of a batch starts: forget rows an earlier attempt counted."""
        with self._lock:
            counted = self._per_job.pop(job.label, 0)
            self._done[job.stage.stage_name] -= counted
        if counted:
            self.inner.advance(job.stage.stage_name, -counted)

    def job_advance(self, job: BatchJob, n: int) -> None:
        with self._lock:
            self._per_job[job.label] += n
        self.advance(job.stage.stage_name, n)

    def job_finished(self, job: BatchJob) -> None:
        """Called in the flow's thread when a batch's task completes: count the rows it did not report."""
        with self._lock:
            remaining = job.size - self._per_job.pop(job.label, 0)
        if remaining > 0:
            self.advance(job.stage.stage_name, remaining)
        else:
            self.flush()

    # --- the artifact ---------------------------------------------------------------------------------------

    def percent(self) -> float:
        """Share of the run done: each step (stage, then verify+dedup+write) weighs the same."""
        with self._lock:
            done_steps = 0.0
            for step in self.steps:
                total = self._totals.get(step)
                if total is None:
                    continue
                done_steps += min(1.0, self._done[step] / total) if total else 1.0
        return round(100.0 * done_steps / len(self.steps), 1)

    def describe(self) -> str:
        with self._lock:
            step = self._current
            if step is None:
                return "loading seeds"
            position = self.steps.index(step) + 1 if step in self.steps else len(self.steps)
            done, total = self._done[step], self._totals.get(step, 0)
        return f"step {position}/{len(self.steps)} · {step}: {min(done, total):,} of {total:,} rows"

    def flush(self, force: bool = False) -> None:
        """Push the current state to the artifact (from the flow's thread; throttled unless ``force``)."""
        if self.artifact_id is None or threading.get_ident() != self._owner:
            return
        now = time.monotonic()
        if not force and now - self._last_push < self.min_interval:
            return
        state = (self.percent(), self.describe())
        if state == self._last_sent:
            return
        self._last_push, self._last_sent = now, state
        try:
            update_progress_artifact(self.artifact_id, progress=state[0], description=state[1])
            self.updates += 1
        except Exception:  # a lost progress update must not fail the build
            pass

    def finish(self, description: str) -> None:
        if self.artifact_id is not None:
            try:
                update_progress_artifact(self.artifact_id, progress=100.0, description=description)
                self.updates += 1
            except Exception:
                pass

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"totals": dict(self._totals), "done": dict(self._done)}
