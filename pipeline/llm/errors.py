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
