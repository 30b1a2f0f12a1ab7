"""The one LLM step every model stage uses, in the curator spirit: ``prompt`` builds requests from items,
``parse`` (a check) turns each sample into usable text or a rejection reason.

What it does for a stage, so no stage copies it:

- the whole batch goes to the engine in one ``client.complete`` (continuous batching sees every request);
- every request carries a seed drawn from the stage's deterministic rng and a stable ``slot``, so a rerun asks the
  same requests and the request cache answers them;
- malformed samples (truncated, no answer, a parse failure) are re-asked a bounded number of times;
- multi-turn: a request can carry earlier turns and an assistant prefix to continue (``Turns``), stop on a stop
  string, let the stage act (run code) and continue the same conversation;
- template hashes reach the resume key through ``LLMParams.template_hashes`` and each row's provenance through
  ``Candidate.generator``.

A ``Candidate`` is the bookkeeping of one item on its way through a stage's steps: tokens spent, templates used,
and the models of the roles it met (``generator.roles``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from pipeline.llm.templates import PromptTemplate, load_template
from pipeline.llm.types import ChatRequest, Completion
from pipeline.stages import StageContext

T = TypeVar("T", bound="Candidate")
# parse(candidate, text, finish_reason) -> None when the sample is usable, else a short rejection reason
Parse = Callable[[T, str, str], "str | None"]


class LLMParams(BaseModel):
    """Base of an LLM stage's parameters: ``templates`` (one template ref per step) and ``reasks``.

    ``template_hashes`` is computed from the template files, so it is part of ``model_dump`` and hence of the
    build's batch key: editing a template reruns the batches that used it, never silently reuses them.
    """

    model_config = ConfigDict(extra="forbid")

    reasks: int = Field(1, ge=0, le=5, description="re-asks for malformed samples (truncated, unparsable)")

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        computed = cls.model_computed_fields  # template_hashes, and any a stage adds (e.g. a file's hash)
        if isinstance(data, dict) and computed.keys() & data.keys():  # a dumped Params validates again
            data = {k: v for k, v in data.items() if k not in computed}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def template_hashes(self) -> dict[str, str]:
        templates = getattr(self, "templates", None)
        if templates is None:
            return {}
        refs = templates.model_dump() if isinstance(templates, BaseModel) else dict(templates)
        return {step: load_template(ref).sha256[:16] for step, ref in refs.items() if ref}


def request_seed(*parts: object) -> int:
    """A 31-bit seed from ``parts`` (never 0, 1, 2 ...: vLLM seeds sample j with seed + j)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class Candidate:
    """One item on its way through a stage's LLM steps."""

    parent: dict[str, Any] | None
    slot: str  # stable name of what the requests are for (explains cache misses)
    seed: int
    tokens_in: int = 0
    tokens_out: int = 0
    used: list[tuple[str, str]] = field(default_factory=list)  # (step, role) in the order they ran
    reject: str | None = None
    detail: str = ""

    def charge(self, completion: Completion) -> None:
        self.tokens_in += completion.prompt_tokens
        self.tokens_out += completion.completion_tokens

    def fail(self, reason: str, detail: str = "") -> None:
        self.reject, self.detail = reason, detail


@dataclass
class Turns:
    """A conversation to continue: earlier messages, the last one an assistant prefix the model goes on with."""

    messages: list[dict[str, str]]

    def extend_assistant(self, text: str) -> None:
        if self.messages and self.messages[-1]["role"] == "assistant":
            self.messages[-1] = {"role": "assistant", "content": self.messages[-1]["content"] + text}
        else:
            self.messages.append({"role": "assistant", "content": text})


class LLMStep(Generic[T]):
    """One model call per candidate for one step of a stage (a template, a role and its sampling)."""

    def __init__(
        self,
        ctx: StageContext,
        step: str,
        template: str | PromptTemplate,
        role: str = "teacher",
        *,
        reasks: int = 0,
        stop: Sequence[str] | None = None,
        **sampling: Any,
    ) -> None:
        self.ctx, self.step, self.role = ctx, step, role
        self.template = template if isinstance(template, PromptTemplate) else load_template(template)
        self.client = ctx.client(role)
        self.reasks = reasks
        self.stop = list(stop) if stop else None
        self.sampling = {"n": 1, **sampling}

    def prompt(
        self, cand: T, variables: dict[str, Any], turns: Turns | None = None, turn: int = 0
    ) -> ChatRequest:
        """The request for ``cand``: the template rendered with ``variables``, or ``turns`` continued; ``turn``
        numbers the requests of one conversation (its seed and slot differ per turn)."""
        messages = self.template.render(**variables) if turns is None else [dict(m) for m in turns.messages]
        seed = request_seed(cand.seed, self.step) if turns is None else request_seed(cand.seed, self.step, turn)
        return ChatRequest(
            messages=messages,
            seed=seed,
            template=self.template.name,
            template_hash=self.template.sha256,
            slot=f"{self.ctx.stage}|{self.step}|{cand.slot}" + (f"|t{turn}" if turns else ""),
            stop=self.stop,
            continue_final=bool(turns and messages[-1]["role"] == "assistant"),
            **self.sampling,
        )

    def __call__(
        self,
        cands: Sequence[T],
        variables: Callable[[T], dict[str, Any]] | None = None,
        parse: Parse[T] | None = None,
        turns: Callable[[T], Turns] | None = None,
    ) -> list[Completion]:
        """Completions for ``cands`` in order; each sample's rejection reason (or None) is in ``problems``."""
        if not cands:
            return []
        if (variables is None) == (turns is None):
            raise ValueError("give either variables (a new conversation) or turns (one to continue)")
        requests = [
            self.prompt(c, variables(c) if variables else {}, turns(c) if turns else None, len(c.used))
            for c in cands
        ]
        check = None if parse is None else (lambda i, text, finish: parse(cands[i], text, finish))
        results = self.client.complete(requests, check=check, max_reasks=self.reasks)
        for cand, comp in zip(cands, results, strict=True):
            cand.charge(comp)
            cand.used.append((self.step, self.role))
        return results

    def describe(self) -> dict[str, Any]:
        return {**self.sampling, **({"stop": self.stop} if self.stop else {})}


def usable_texts(comp: Completion) -> list[str | None]:
    """Per sample: its text when the parse accepted it, else None (rejected samples count against agreement)."""
    problems = comp.problems or [None] * len(comp.texts)
    return [t if p is None else None for t, p in zip(comp.texts, problems, strict=True)]


def generator(cand: Candidate, steps: dict[str, LLMStep[Any]], main_role: str = "teacher") -> dict[str, Any]:
    """The row's model provenance: the main role's model, every role's model, sampling and templates used."""
    used_steps = [steps[s] for s, _ in cand.used if s in steps]
    roles: dict[str, dict[str, Any]] = {}
    for s in used_steps:
        roles.setdefault(s.role, {"model": s.client.model, "revision": s.client.revision,
                                  "name": s.client.name})
    main = roles.get(main_role) or next(iter(roles.values()), {"model": None, "revision": None})
    templates = list(dict.fromkeys(s.template for s in used_steps))
    return {
        "model": main["model"],
        "revision": main["revision"],
        "roles": roles,
        "sampling": json.dumps({s.step: s.describe() for s in used_steps}, sort_keys=True),
        "template": "+".join(t.name for t in templates),
        "template_hash": hashlib.sha256("|".join(f"{t.name}:{t.sha256}" for t in templates).encode()).hexdigest(),
        "tokens_in": cand.tokens_in,
        "tokens_out": cand.tokens_out,
    }


def stable_slot(record: dict[str, Any]) -> str:
    """What a seed's requests are for, stable across edits of the seed text (explains cache misses only)."""
    seed_id = (record.get("source") or {}).get("seed_id")
    return seed_id if seed_id and record.get("method") == "seed" else record["id"]
