"""Sympy under a hard, process-level timeout: a small pool of worker processes that are killed and replaced.

Why processes and not SIGALRM: signals only work on the main thread (math-verify #50/#55) and cannot interrupt
a long C-level bignum operation. A worker here is a plain `subprocess` (not multiprocessing), so it can be used
from threads, from daemonic pool workers and after fork; it talks length-prefixed pickles over its pipes.
The worker is also where `grade_many` does its batch work, so both cores are used.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

STARTUP_TIMEOUT = 120.0
_HEADER = struct.Struct("<I")
_ROOT = str(Path(__file__).resolve().parents[2])


class VerifyTimeout(Exception):
    """A sandboxed computation ran past its time limit (the worker was killed)."""


class WorkerError(Exception):
    """The worker died or answered with an error."""


class Counters:
    """Process-wide counts, reported by `pipeline.verify.stats()`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values = {"timeouts": 0, "escalations": 0, "worker_starts": 0, "worker_errors": 0}

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.values[key] = self.values.get(key, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.values)


COUNTERS = Counters()


def _write_frame(stream, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


class Worker:
    """One sandbox process. Not thread-safe: the pool hands each worker to one thread at a time."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.verify.sandbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self.buf = b""
        COUNTERS.add("worker_starts")
        self.ready = False

    def wait_ready(self) -> None:
        if not self.ready:
            msg = self.recv(time.monotonic() + STARTUP_TIMEOUT)
            if msg != ("ready",):
                raise WorkerError(f"unexpected greeting {msg!r}")
            self.ready = True

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, msg: object) -> None:
        try:
            _write_frame(self.proc.stdin, msg)
        except (BrokenPipeError, OSError) as exc:
            raise WorkerError("worker pipe closed") from exc

    def recv(self, deadline: float) -> object:
        fd = self.proc.stdout.fileno()
        while True:
            if len(self.buf) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self.buf)
                if len(self.buf) >= _HEADER.size + size:
                    data = self.buf[_HEADER.size : _HEADER.size + size]
                    self.buf = self.buf[_HEADER.size + size :]
                    return pickle.loads(data)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise VerifyTimeout("timeout")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise WorkerError("worker exited")
            self.buf += chunk

    def kill(self) -> None:
        """End this worker (a process this module started) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class Pool:
    """Lazily started workers shared by all threads of one process (up to `size` at a time)."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._reset()
        atexit.register(self.close)

    def _reset(self) -> None:
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.idle: list[Worker] = []
        self.count = 0

    def _check_fork(self) -> None:
        # After fork the parent's workers belong to the parent: forget them, start our own.
        if os.getpid() != self.pid:
            self._reset()

    def acquire(self) -> Worker:
        self._check_fork()
        with self.cond:
            while not self.idle and self.count >= self.size:
                self.cond.wait()
            if self.idle:
                return self.idle.pop()
            self.count += 1
        try:
            worker = Worker()
            worker.wait_ready()
            return worker
        except BaseException:
            with self.cond:
                self.count -= 1
                self.cond.notify()
            raise

    def release(self, worker: Worker, healthy: bool) -> None:
        if os.getpid() != self.pid:
            return
        with self.cond:
            if healthy and worker.alive():
                self.idle.append(worker)
            else:
                self.count -= 1
            self.cond.notify()
        if not healthy:
            worker.kill()

    def call(self, msg: tuple, timeout: float) -> object:
        """Run one request in a worker; on timeout the worker is killed and VerifyTimeout raised."""
        worker = self.acquire()
        healthy = False
        try:
            worker.send(msg)
            reply = worker.recv(time.monotonic() + timeout)
            healthy = True
        except VerifyTimeout:
            COUNTERS.add("timeouts")
            raise
        except WorkerError:
            COUNTERS.add("worker_errors")
            raise
        finally:
            self.release(worker, healthy)
        status, value = reply
        if status != "ok":
            raise WorkerError(str(value))
        return value

    def stream(self, items: list[tuple], timeout: float) -> Iterator[tuple[int, str, object]]:
        """Grade a batch in one worker, yielding (index, status, value) per item with a per-item deadline.

        A timed-out item yields status 'timeout'; the worker is replaced and the rest of the batch resent.
        """
        start = 0
        while start < len(items):
            worker = self.acquire()
            healthy = False
            try:
                worker.send(("grade_batch", items[start:]))
                while start < len(items):
                    try:
                        status, value = worker.recv(time.monotonic() + timeout)
                    except VerifyTimeout:
                        COUNTERS.add("timeouts")
                        yield start, "timeout", None
                        start += 1
                        break
                    except WorkerError:
                        COUNTERS.add("worker_errors")
                        yield start, "error", "worker died"
                        start += 1
                        break
                    yield start, status, value
                    start += 1
                else:
                    healthy = True
            finally:
                self.release(worker, healthy)

    def close(self) -> None:
        if os.getpid() != self.pid:
            return
        with self.cond:
            idle, self.idle = self.idle, []
            self.count -= len(idle)
        for worker in idle:
            worker.kill()


def call(ref: str, *args: object, timeout: float) -> object:
    """Run the function ``ref`` (``"pipeline.module:function"``) with picklable ``args`` in a worker under a hard
    timeout, for a stage's own sympy work (e.g. solving a chain for a masked number). Raises ``VerifyTimeout``
    (the worker is killed) or ``WorkerError`` (including the function's own exception, as text)."""
    return default_pool().call(("call", ref, args), timeout)


_POOL: Pool | None = None
_POOL_LOCK = threading.Lock()


def default_pool() -> Pool:
    """The process-wide pool: one worker per CPU core, at least two and at most eight (each holds sympy)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = Pool(min(8, max(2, os.cpu_count() or 2)))
        return _POOL


# ------------------------------------------------------------------------------------------------------------
# Worker side


def _serve() -> None:
    import resource

    try:  # a runaway bignum must not take the machine down with it
        limit = 4 << 30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass
    import sympy  # noqa: F401  (import before 'ready' so it never counts against a request's timeout)

    from . import core

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    _write_frame(stdout, ("ready",))
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        (size,) = _HEADER.unpack(header)
        msg = pickle.loads(stdin.read(size))
        kind = msg[0]
        if kind == "grade_batch":
            for output, gold, extract in msg[1]:
                fn = core.grade_inline if extract else core.match_as_grade_inline
                _write_frame(stdout, _safe(fn, output, gold))
            continue
        if kind == "decide":
            reply = _safe(core.decide_sympy, msg[1], msg[2], msg[3])
        elif kind == "match":
            reply = _safe(core.match_inline, msg[1], msg[2])
        elif kind == "call":
            reply = _safe(_call_ref, msg[1], msg[2])
        elif kind == "ping":
            reply = ("ok", "pong")
        elif kind == "sleep":  # used by tests to exercise the timeout path
            time.sleep(msg[1])
            reply = ("ok", None)
        else:
            reply = ("err", f"unknown request {kind!r}")
        _write_frame(stdout, reply)


def _call_ref(ref: str, args: tuple) -> object:
    """Call ``pipeline.<module>:<function>`` with ``args`` (only mathaug's own functions are callable)."""
    import importlib

    module, _, name = ref.partition(":")
    if not module.startswith("pipeline.") or not name:
        raise ValueError(f"not a pipeline function reference: {ref!r}")
    return getattr(importlib.import_module(module), name)(*args)


def _safe(fn, *args) -> tuple[str, object]:
    try:
        return "ok", fn(*args)
    except MemoryError:
        return "err", "out of memory"
    except RecursionError:
        return "err", "recursion too deep"
    except Exception as exc:  # the worker must survive any bad input
        return "err", f"{type(exc).__name__}: {exc}"[:300]


if __name__ == "__main__":
    _serve()
