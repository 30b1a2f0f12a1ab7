"""What stages hand to a model client and what they get back; the same for every backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ChatRequest:
    """One chat prompt and its sampling parameters (every one of them is part of the cache key).

    ``template`` / ``template_hash`` name the prompt template that rendered ``messages`` (part of the key, so
    editing a template re-sends only its requests). ``slot`` says what the request is for, stably across recipe
    edits (e.g. ``rewrite|<seed id>|0``); it is not part of the key and only lets ``mathaug cache stats`` explain
    which part of the key changed on a miss.

    Draw ``seed`` at random per request (e.g. from ``ctx.rng(record id)``), never as 0, 1, 2...: vLLM seeds
    sample ``j`` of a request with ``seed + j``, so consecutive seeds would share samples across requests.
    """

    messages: list[dict[str, str]]
    n: int = 1
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int | None = None
    stop: list[str] | None = None
    template: str | None = None
    template_hash: str | None = None
    slot: str | None = None
    # the last message is an assistant turn to continue (a prefix the model goes on writing, e.g. after a code
    # block's output was appended), not a finished turn to answer
    continue_final: bool = False

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError("a chat request needs at least one message")
        for m in self.messages:
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(f"messages must be dicts with 'role' and 'content', got {m!r}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.continue_final and self.messages[-1]["role"] != "assistant":
            raise ValueError("continue_final needs an assistant message last (the prefix to continue)")

    def sampling(self) -> dict[str, Any]:
        """Every sampling parameter, as recorded in rows and hashed into the cache key."""
        out: dict[str, Any] = {
            "n": self.n,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "stop": list(self.stop) if self.stop else None,
        }
        if self.continue_final:  # only when set: keys of ordinary requests stay what they were
            out["continue_final"] = True
        return out


@dataclass
class Completion:
    """The ``n`` samples for one request.

    ``prompt_tokens`` counts the prompt once per request; ``completion_tokens`` sums over the samples.
    ``error`` is set (and ``texts`` empty) when this one request failed for good, e.g. a prompt longer than the
    context; a batch never fails because of one request. ``problems`` holds, per sample, the reason a stage's
    output check rejected it (``None`` = fine); filled only when ``complete(check=...)`` is used.
    """

    texts: list[str]
    finish_reasons: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    error: str | None = None
    problems: list[str | None] = field(default_factory=list)
    # samples that came through extra single-sample requests because the server returned fewer than `n`
    filled: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def good_texts(self) -> list[str]:
        """Samples that passed the output check (all samples when no check ran)."""
        if not self.problems:
            return list(self.texts)
        return [t for t, p in zip(self.texts, self.problems, strict=True) if p is None]

    def to_json(self) -> dict[str, Any]:
        return {
            "texts": self.texts,
            "finish_reasons": self.finish_reasons,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, cached: bool = False) -> Completion:
        return cls(
            texts=list(data["texts"]),
            finish_reasons=list(data["finish_reasons"]),
            prompt_tokens=int(data["prompt_tokens"]),
            completion_tokens=int(data["completion_tokens"]),
            cached=cached,
        )

    @classmethod
    def failed(cls, error: str) -> Completion:
        return cls(texts=[], finish_reasons=[], error=error)
