"""One ``ModelPool`` per build: model configs by name, one request cache, backends created on first use."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.funnel import Funnel
from pipeline.llm.cache import RequestCache
from pipeline.llm.client import Backend, LLMClient
from pipeline.llm.config import ModelConfig


def model_identity(config: ModelConfig) -> dict[str, Any]:
    """The config's identity, plus a fingerprint of a local model directory (its config and weight sizes), so
    a different model saved at the same path does not hit the old cache entries."""
    ident = config.identity()
    path = Path(config.model)
    if path.is_dir():
        h = hashlib.sha256()
        cfg = path / "config.json"
        if cfg.is_file():
            h.update(cfg.read_bytes())
        for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
            h.update(f"{weights.name}:{weights.stat().st_size}".encode())
        ident["local_fingerprint"] = h.hexdigest()[:16]
    return ident


class ModelPool:
    """Hands each stage a client for a named model; engines and servers are shared across stages."""

    def __init__(
        self,
        configs: Mapping[str, ModelConfig | Mapping[str, Any]],
        cache_path: Path | None = None,
        funnel: Funnel | None = None,
        *,
        session_label: str | None = None,
    ) -> None:
        self.configs = {
            name: cfg if isinstance(cfg, ModelConfig) else ModelConfig.model_validate(cfg)
            for name, cfg in configs.items()
        }
        self.funnel = funnel if funnel is not None else Funnel()
        self.cache = RequestCache(cache_path, label=session_label) if cache_path is not None else None
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()

    def _backend(self, name: str) -> Backend:
        with self._lock:
            if name not in self._backends:
                config = self.configs[name]
                if config.uses_engine_workers:  # one engine per worker process (or Ray actor)
                    from pipeline.llm.workers import make_worker_backend

                    self._backends[name] = make_worker_backend(config)
                elif config.backend == "vllm":
                    from pipeline.llm.vllm_backend import VLLMBackend

                    self._backends[name] = VLLMBackend(config)
                else:
                    from pipeline.llm.openai_backend import OpenAIBackend

                    self._backends[name] = OpenAIBackend(config)
            return self._backends[name]

    def client(self, name: str, stage: str, funnel: Funnel | None = None) -> LLMClient:
        """A client for model ``name`` whose usage is counted under ``stage`` (in ``funnel``, default the
        pool's)."""
        if name not in self.configs:
            raise KeyError(f"no model named {name!r} in the recipe's models; known: {sorted(self.configs)}")
        config = self.configs[name]
        return LLMClient(
            name=name,
            model=config.model,
            revision=config.revision,
            identity=model_identity(config),
            backend=lambda: self._backend(name),
            cache=self.cache,
            funnel=funnel if funnel is not None else self.funnel,
            stage=stage,
        )

    def release(self, name: str) -> bool:
        """Free model ``name``'s in-process engine (GPU memory) until its next use; True if one was running.

        A server-backed model holds nothing between batches, so releasing it is a no-op.
        """
        with self._lock:
            backend = self._backends.pop(name, None)
        if backend is None or self.configs[name].backend != "vllm":
            return False
        backend.close()
        if self.configs[name].uses_engine_workers:  # close() stopped the worker processes
            return True
        from pipeline.llm.vllm_backend import release_engine

        return release_engine(self.configs[name])

    def describe(self) -> dict[str, Any]:
        """Model configs for the manifest (the API key is only ever an env var name)."""
        return {name: json.loads(cfg.model_dump_json()) for name, cfg in self.configs.items()}

    def close(self) -> None:
        with self._lock:
            for backend in self._backends.values():
                backend.close()
            self._backends.clear()
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    def __enter__(self) -> ModelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
