"""Recipe-level description of one model: which backend serves it and how.

A recipe's ``models:`` maps a short name (``teacher``) to one of these; stages refer to models by that name and
never see the backend. Only the fields of the chosen backend matter; the others keep their defaults.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

# vLLM engine options that change what the model returns (the rest only change speed or memory).
OUTPUT_ENGINE_ARGS = ("quantization", "kv_cache_dtype", "tokenizer", "tokenizer_revision", "hf_overrides",
                      "generation_config", "override_generation_config")


class ModelConfig(pydantic.BaseModel, extra="forbid"):
    """One model and its backend options (vLLM in-process engine, or any OpenAI-compatible server)."""

    backend: Literal["vllm", "openai"]
    model: str = pydantic.Field(
        min_length=1, description="local path / hub id (vllm) or served name (openai)"
    )
    revision: str | None = None

    # vllm: the in-process engine
    tensor_parallel_size: int = pydantic.Field(1, ge=1)
    data_parallel_size: int = pydantic.Field(
        1, ge=1, description="engine worker processes (one engine each, tensor_parallel_size GPUs each); "
        "never passed to vllm.LLM, which refuses single-process data parallelism (pipeline/llm/workers.py)",
    )
    gpus: list[int] | None = pydantic.Field(
        None, description="GPU ids for engine workers: len(gpus) / tensor_parallel_size workers, each pinned to "
        "its slice with CUDA_VISIBLE_DEVICES (overrides data_parallel_size)",
    )
    dtype: str = "auto"
    max_model_len: int | None = pydantic.Field(None, ge=1)
    gpu_memory_utilization: float = pydantic.Field(0.9, gt=0, le=1)
    enforce_eager: bool = False
    enable_prefix_caching: bool = True
    seed: int = 0
    extra_engine_args: dict[str, Any] = pydantic.Field(default_factory=dict)
    keep_loaded: bool = pydantic.Field(
        False,
        description="keep the in-process engine between stages that do not use it (default: released as soon as "
        "the next stage does not use it, so a student and a teacher can alternate on one GPU)",
    )

    # openai: any OpenAI-compatible HTTP server
    base_url: str | None = None
    api_key_env: str | None = pydantic.Field(
        None, description="name of the environment variable that holds the API key (never the key itself)"
    )
    max_concurrency: int = pydantic.Field(64, ge=1)
    request_timeout_s: float = pydantic.Field(
        600.0, gt=0, description="give up on one request (openai) or one engine step (vllm) after this long"
    )
    max_retries: int = pydantic.Field(6, ge=0, description="retries per request (backoff 1, 2, 4 ... s)")
    retry_backoff_s: float = pydantic.Field(1.0, gt=0, description="first retry delay; doubles per retry")
    retry_backoff_max_s: float = pydantic.Field(30.0, gt=0, description="cap on one retry delay")

    @pydantic.field_validator("api_key_env", "revision", "base_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value  # `${VAR:-}` in a recipe means "not set"

    @pydantic.model_validator(mode="after")
    def _backend_fields(self) -> ModelConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
        if self.gpus is not None and (not self.gpus or len(self.gpus) % self.tensor_parallel_size):
            raise ValueError(
                f"gpus {self.gpus} must be a non-empty multiple of tensor_parallel_size ({self.tensor_parallel_size})"
            )
        return self

    @property
    def engine_workers(self) -> int:
        """How many engine worker processes serve this model (1: the engine lives in the calling process)."""
        if self.gpus is not None:
            return len(self.gpus) // self.tensor_parallel_size
        return self.data_parallel_size

    @property
    def uses_engine_workers(self) -> bool:
        """Whether the model runs on engine worker processes (or Ray actors) rather than in this process."""
        return self.backend == "vllm" and (self.data_parallel_size > 1 or self.gpus is not None)

    def identity(self) -> dict[str, Any]:
        """What makes two configs give the same completions (part of the request-cache key).

        Throughput knobs (parallelism, memory, concurrency, timeouts) are left out on purpose: they do not change
        what the model returns, so changing them must not invalidate the cache.
        """
        ident: dict[str, Any] = {"model": self.model, "revision": self.revision}
        if self.backend == "vllm":
            ident["dtype"] = self.dtype
            ident["max_model_len"] = self.max_model_len
            ident["seed"] = self.seed  # the engine seed decides unseeded samples
            for key in OUTPUT_ENGINE_ARGS:
                if key in self.extra_engine_args:
                    ident[key] = self.extra_engine_args[key]
        else:  # the same served name on another server can be another model
            ident["base_url"] = (self.base_url or "").rstrip("/")
        return ident
