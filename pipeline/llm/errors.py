"""Errors that stop a whole stage (a per-request failure never does: it becomes ``Completion.error``)."""

from __future__ import annotations


class LLMError(RuntimeError):
    """Base class for model-layer errors that a stage cannot work around."""


class BackendUnavailableError(LLMError):
    """The server did not answer after the bounded retries (down, wrong URL, killed mid-stage).

    Completed requests are already in the request cache: rerunning the stage resends only the rest.
    """


class ModelNotFoundError(LLMError):
    """The server is up but does not serve the configured model name."""


class BackendAuthError(LLMError):
    """The server refused the API key (401/403)."""


class EngineStalledError(LLMError, TimeoutError):
    """An in-process vLLM engine step ran past ``request_timeout_s`` (the engine hung or its process died
    silently). The engine is shut down and the next use starts a new one; a ``TimeoutError``, so the flow's task
    retry runs the batch again, and finished requests are already in the request cache.
    """
