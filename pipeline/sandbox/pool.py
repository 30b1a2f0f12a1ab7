"""Run model-written Python under a hard boundary: a pool of pre-started, self-isolating worker processes.

Why plain subprocesses speaking JSON lines (not multiprocessing): usable from any thread, after fork, and from
daemonic workers; a worker that stops answering is simply killed (its whole process group) and replaced.
Each worker isolates itself once (see `pipeline.sandbox.worker`) and runs every snippet in a forked child
with hard limits, so one pre-import of numpy/sympy serves many calls and a snippet cannot damage the worker.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.sandbox.cpus import CpuPlacement

log = logging.getLogger("pipeline.sandbox")

WORKER_SCRIPT = str(Path(__file__).with_name("worker.py"))
STARTUP_TIMEOUT_S = 60.0
REPLY_SLACK_S = 5.0  # beyond the call's own timeout: fork, cleanup, transfer
MAX_REPLY_BYTES = 1 << 20
# The only environment a worker sees: no secrets can leak through it because nothing else is passed.
WORKER_ENV = {
    "PATH": "/nonexistent",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",
}

Status = Literal["ok", "error", "timeout", "killed"]
STATUSES = ("ok", "error", "timeout", "killed")


class SandboxConfig(BaseModel):
    """Per-call limits and pool settings (the code_tir stage will take them from its recipe)."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(5.0, gt=0, le=600, description="wall-clock limit per call")
    cpu_s: float | None = Field(
        None, gt=0, le=600, description="CPU-time limit per call (default: timeout_s)"
    )
    memory_mb: int = Field(1024, ge=256, description="address-space limit of the snippet's process")
    max_processes: int = Field(8, ge=1, le=4096, description="processes + threads the snippet may have")
    max_output_chars: int = Field(400, ge=20, description="output is middle-truncated to this length")
    workers: int = Field(2, ge=1, le=64, description="pre-started worker processes")
    carry_state: bool = Field(False, description="calls of one session see the variables of earlier calls")
    network: bool = Field(False, description="allow network access (off: a private network namespace)")
    namespaces: bool = Field(True, description="use namespaces where the OS allows (off: test the fallback)")
    tmp_mb: int = Field(64, ge=1, description="size of the private /tmp working directory")
    preload: tuple[str, ...] = Field(
        ("math", "numpy", "sympy"), description="modules imported once per worker"
    )
    cpus: Literal["auto", "all"] | list[Annotated[int, Field(ge=0)]] = Field(
        "auto",
        description="CPUs snippets run on: auto = not the cores an in-process CPU engine pinned its threads to "
        "(pipeline/sandbox/cpus.py), all = any, or a list of CPU ids",
    )


@dataclass(frozen=True)
class ExecResult:
    """What a call produced: stdout (or the last traceback line), middle-truncated."""

    status: Status
    output: str
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


class SandboxError(RuntimeError):
    """The sandbox could not start a worker at all."""


class WorkerGone(Exception):
    """The worker died, stopped answering, or sent something that is not a reply."""


_warned = False
_warn_lock = threading.Lock()


def _warn_once(missing: list[str]) -> None:
    global _warned
    with _warn_lock:
        if _warned or not missing:
            return
        _warned = True
    log.warning(
        "sandbox: running without %s; see docs/sandbox.md for what the fallback still enforces",
        "; ".join(missing),
    )


def _close_at_exit(ref: weakref.ref) -> None:
    sandbox = ref()
    if sandbox is not None:
        sandbox.close()


class Worker:
    """One worker process; used by one thread at a time (the pool hands it out)."""

    def __init__(self, settings: dict) -> None:
        self.mountpoint = tempfile.mkdtemp(prefix="root-", dir=settings["base_dir"])
        self.workdir = tempfile.mkdtemp(prefix="work-", dir=settings["base_dir"])
        os.chmod(self.workdir, 0o700)
        payload = json.dumps({**settings, "mountpoint": self.mountpoint, "workdir": self.workdir})
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-B", WORKER_SCRIPT, payload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(WORKER_ENV),
            cwd="/",
            close_fds=True,
            start_new_session=True,  # its own process group: killpg reaches it and everything it started
        )
        self.buffer = b""
        self.report: dict | None = None

    def wait_ready(self) -> dict:
        if self.report is None:
            message = self.receive(time.monotonic() + STARTUP_TIMEOUT_S)
            if not message.get("ready"):
                raise WorkerGone(f"unexpected greeting {message!r}")
            self.report = message
        return self.report

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, message: dict) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise WorkerGone("worker pipe closed") from exc

    def receive(self, deadline: float) -> dict:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_REPLY_BYTES:
                raise WorkerGone("reply too long")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("worker did not answer")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise WorkerGone("worker exited")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise WorkerGone("malformed reply") from exc
        if not isinstance(message, dict):
            raise WorkerGone("malformed reply")
        return message

    def kill(self) -> None:
        """End the worker and everything in its process group (all processes this module started)."""
        if self.proc.poll() is None:  # not reaped yet, so its pid (= its group's id) cannot have been reused
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        for path in (self.mountpoint, self.workdir):
            shutil.rmtree(path, ignore_errors=True)


class Sandbox:
    """Thread-safe: many trajectories may call `run` at once; each call takes an idle worker.

    With ``carry_state``, calls that share a ``session`` see earlier calls' variables: the earlier blocks
    (those that did not time out or get killed) are replayed silently before the new one, so any worker can
    serve any call and a killed worker loses nothing. `end_session` forgets a session's blocks.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.sessions: dict[str, list[tuple[str, float]]] = {}
        self._start_pool()

    def _start_pool(self) -> None:
        self.base_dir = tempfile.mkdtemp(prefix="mathaug-sandbox-")
        os.chmod(self.base_dir, 0o711)
        self.settings = {
            "network": self.config.network,
            "namespaces": self.config.namespaces,
            "tmp_mb": self.config.tmp_mb,
            "preload": list(self.config.preload),
            "base_dir": self.base_dir,
        }
        self.cond = threading.Condition()
        self.idle: list[Worker] = [Worker(self.settings) for _ in range(self.config.workers)]
        self.busy: set[Worker] = set()
        self.closed = False
        self.owner_pid = os.getpid()
        self.placement = CpuPlacement(self.config.cpus, WORKER_SCRIPT)
        self._mechanisms: dict | None = None
        atexit.register(_close_at_exit, weakref.ref(self))  # a weak reference: no sandbox is kept alive

    def _check_fork(self) -> None:
        """After a fork (a process pool, say) the workers' pipes belong to the parent: start our own."""
        if os.getpid() != self.owner_pid and not self.closed:
            self._start_pool()

    # -- pool
    def _acquire(self) -> Worker:
        self._check_fork()
        with self.cond:
            while not self.idle and not self.closed:
                self.cond.wait()
            if self.closed:
                raise SandboxError("sandbox is closed")
            worker = self.idle.pop(0)  # round robin: every worker gets used (and checked)
            if not worker.alive():  # died while idle (killed from outside): replace it before use
                dead, worker = worker, Worker(self.settings)
                threading.Thread(target=dead.kill, daemon=True).start()
            self.busy.add(worker)
        try:
            report = worker.wait_ready()
        except (WorkerGone, TimeoutError) as exc:
            self._release(worker, healthy=False)
            raise SandboxError(f"sandbox worker failed to start: {exc}") from exc
        if self._mechanisms is None:
            self._mechanisms = {
                "enforced": report.get("mechanisms", {}),
                "missing": report.get("missing", []),
            }
            _warn_once(self._mechanisms["missing"])
        return worker

    def _release(self, worker: Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()
        with self.cond:
            self.busy.discard(worker)
            if self.closed:
                if healthy:
                    worker.kill()
                if not self.busy:
                    shutil.rmtree(self.base_dir, ignore_errors=True)
            elif healthy and worker.alive():
                self.idle.append(worker)
            else:
                self.idle.append(Worker(self.settings))  # the replacement starts now, in the background
            self.cond.notify()

    # -- public API
    def run(self, code: str, session: str | None = None) -> ExecResult:
        """Execute one snippet; never raises for anything the snippet does."""
        cfg = self.config
        history: list[tuple[str, float]] = []
        if cfg.carry_state and session is not None:
            with self.cond:
                history = list(self.sessions.get(session, []))
        replay_seconds = sum(seconds for _, seconds in history)
        timeout = cfg.timeout_s + replay_seconds
        cpu = (cfg.cpu_s or cfg.timeout_s) + replay_seconds
        request = {
            "code": code,
            "replay": [block for block, _ in history],
            "timeout_s": timeout,
            "cpu_s": cpu,
            "memory_bytes": cfg.memory_mb * 1024 * 1024,
            "file_bytes": cfg.tmp_mb * 1024 * 1024,
            "max_processes": cfg.max_processes + 1,  # the worker shares the snippet's uid
            "max_output_chars": cfg.max_output_chars,
            "cpus": self.placement.current(),
        }
        started = time.monotonic()
        worker = self._acquire()
        healthy = False
        try:
            worker.send(request)
            reply = worker.receive(time.monotonic() + timeout + REPLY_SLACK_S)
            healthy = bool(reply.get("healthy", False))
            if reply["status"] not in STATUSES:
                raise ValueError(f"unknown status {reply['status']!r}")
            result = ExecResult(
                status=reply["status"], output=str(reply["output"]), seconds=float(reply["seconds"])
            )
        except TimeoutError:
            result = ExecResult(
                "timeout",
                f"TimeoutError: execution took longer than {timeout:g} s",
                time.monotonic() - started,
            )
        except (WorkerGone, KeyError, TypeError, ValueError):
            result = ExecResult("killed", "Killed: the sandbox worker died", time.monotonic() - started)
        finally:
            self._release(worker, healthy)
        if cfg.carry_state and session is not None and result.status in ("ok", "error"):
            with self.cond:
                self.sessions.setdefault(session, []).append((code, result.seconds))
        return result

    async def run_async(self, code: str, session: str | None = None) -> ExecResult:
        """`run` for asyncio callers: the wait happens in a thread, the event loop keeps going."""
        return await asyncio.to_thread(self.run, code, session)

    def end_session(self, session: str) -> None:
        """Forget a session's earlier blocks (call when its trajectory is finished)."""
        with self.cond:
            self.sessions.pop(session, None)

    def mechanisms(self) -> dict:
        """What the workers enforce here (``enforced``) and which layers the OS refused (``missing``)."""
        if self._mechanisms is None:
            self._release(self._acquire(), healthy=True)
        assert self._mechanisms is not None
        return self._mechanisms

    def worker_pids(self) -> list[int]:
        """Process ids of the workers (the outer process of each), for tests and diagnostics."""
        with self.cond:
            return [w.proc.pid for w in [*self.idle, *self.busy]]

    def close(self) -> None:
        if os.getpid() != self.owner_pid:
            return
        with self.cond:
            if self.closed:
                return
            self.closed = True
            idle, self.idle = self.idle, []
            self.cond.notify_all()
        for worker in idle:
            worker.kill()
        if not self.busy:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
