"""Model layer: every generation stage talks to models through ``ModelPool.client(name, stage)``.

Backends: ``vllm`` (in-process engine, the throughput path) and ``openai`` (any OpenAI-compatible server).
Stages never see which one runs. Heavy imports (vllm, openai) happen only when a backend is first used.
"""

from pipeline.llm.cache import RequestCache, cache_stats
from pipeline.llm.client import LLMClient
from pipeline.llm.config import ModelConfig
from pipeline.llm.errors import BackendAuthError, BackendUnavailableError, LLMError, ModelNotFoundError
from pipeline.llm.pool import ModelPool
from pipeline.llm.templates import PromptTemplate, TemplateError, load_template
from pipeline.llm.types import ChatRequest, Completion

__all__ = [
    "BackendAuthError",
    "BackendUnavailableError",
    "ChatRequest",
    "Completion",
    "LLMClient",
    "LLMError",
    "ModelConfig",
    "ModelNotFoundError",
    "ModelPool",
    "PromptTemplate",
    "RequestCache",
    "TemplateError",
    "cache_stats",
    "load_template",
]
