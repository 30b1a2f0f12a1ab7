"""Stages: plain functions over a batch of records, each declared once.

A stage module (or a plugin's object) declares what the build needs to know about it:

- ``NAME``: the method name used in recipes and in each row's ``method``.
- ``VERSION``: bump when the stage's output for the same input changes (it is part of the resume key).
- ``Params``: a pydantic model (``extra="forbid"``) of the stage's recipe parameters.
- ``run(records, params, ctx) -> list[dict]``: the new records made from ``records``.

and, optionally:

- ``ROLES``: the model roles it uses, e.g. ``{"teacher": "writes problems", "solver": "answers them"}``. Each
  role maps to an entry of the recipe's ``models:`` (``stages[i].models``, or the model of the same name); the
  mapping is validated, part of the resume key, and recorded per role in each row's ``generator.roles``.
- ``OUTPUT``: where its rows go: ``"rows"`` (new questions for the dataset, the default), ``"solutions"`` (more
  solutions for existing questions: dedup keys on question and solution), ``"replace"`` (a better solution for
  its parent row, which leaves the dataset) or ``"intermediate"`` (consumed by later stages, never written).
- ``VERIFIER``: how its rows are verified (``gold``, ``majority``, ``execution``, ``recompute``); recorded in
  ``verification.method`` by the stage itself, declared here for the dataset card and docs.
- ``round_roles(params, round)``: inside a ``rounds:`` group, the roles whose model changes with the round:
  role -> a recipe model name (e.g. one student checkpoint per round) or a ``RoundInput`` (a model the user gives
  while the build waits, e.g. a student trained on the rounds so far). The round's model is in the batch key.

A stage never imports Prefect, never writes files of its own, and counts what it throws away with
``ctx.reject(reason, candidate)``. LLM stages get model clients through ``ctx.client(role)``.

Besides the shipped stages below, any installed package can add one through the ``mathaug.stages`` entry-point
group (``name = "package.module"`` or ``"package.module:object"``); see ``docs/stages.md``.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from pipeline.funnel import Funnel
from pipeline.paths import DATA_DIR

Output = Literal["rows", "solutions", "replace", "intermediate"]
OUTPUTS: tuple[str, ...] = ("rows", "solutions", "replace", "intermediate")
ENTRY_POINT_GROUP = "mathaug.stages"

# method name -> module; imported lazily so an LLM-free build never imports model libraries.
REGISTRY: dict[str, str] = {
    "symbolic": "pipeline.stages.symbolic",
    "entity_swap": "pipeline.stages.entity_swap",
    "persona": "pipeline.stages.persona",
    "code_tir": "pipeline.stages.code_tir",
    "cot_length": "pipeline.stages.cot_length",
    "llm2llm": "pipeline.stages.llm2llm",
    "fobar": "pipeline.stages.fobar",
    "evolve": "pipeline.stages.evolve",
    "mathsmith": "pipeline.stages.mathsmith",
}


@dataclass(frozen=True)
class StageDef:
    """What the build knows about a stage: the four required names plus its declarations."""

    name: str
    version: str
    params: type[BaseModel]
    run: Callable[..., list[dict[str, Any]]]
    roles: dict[str, str] = field(default_factory=dict)
    output: Output = "rows"
    verifier: str = "gold"
    description: str = ""
    round_roles: RoundRoles | None = None

    # the names a module exposes, so ``get_stage(m).VERSION`` keeps working for callers of the old interface
    @property
    def NAME(self) -> str:  # noqa: N802
        return self.name

    @property
    def VERSION(self) -> str:  # noqa: N802
        return self.version

    @property
    def Params(self) -> type[BaseModel]:  # noqa: N802
        return self.params

    @classmethod
    def of(cls, obj: Any, method: str) -> StageDef:
        """A ``StageDef`` from a stage module or object with ``NAME``/``VERSION``/``Params``/``run``."""
        if isinstance(obj, StageDef):
            return obj
        missing = [n for n in ("NAME", "VERSION", "Params", "run") if not hasattr(obj, n)]
        if missing:
            raise TypeError(f"stage {method!r} ({obj!r}) lacks {', '.join(missing)}")
        output = getattr(obj, "OUTPUT", "rows")
        if output not in OUTPUTS:
            raise TypeError(f"stage {method!r}: OUTPUT must be one of {OUTPUTS}, got {output!r}")
        return cls(
            name=obj.NAME,
            version=str(obj.VERSION),
            params=obj.Params,
            run=obj.run,
            roles=dict(getattr(obj, "ROLES", {}) or {}),
            output=output,
            verifier=getattr(obj, "VERIFIER", "gold"),
            description=(getattr(obj, "__doc__", "") or "").strip().split("\n")[0],
            round_roles=getattr(obj, "round_roles", None),
        )


@dataclass(frozen=True)
class RoundInput:
    """A role's model for one round that the user gives while the build waits (a path or a served name that
    replaces ``model`` of the role's recipe model): e.g. the student trained on the rounds so far."""

    prompt: str


RoundRoles = Callable[[BaseModel, int], dict[str, "str | RoundInput"]]


class StageRejection(Exception):
    """Raised by a stage's helpers for a candidate that cannot continue; carries the funnel reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass
class StageContext:
    """What a stage may use besides its records and parameters."""

    stage: str
    run_id: str = ""
    seed: int = 0
    funnel: Funnel = field(default_factory=Funnel)
    work_dir: Path | None = None
    data_dir: Path = DATA_DIR
    # model name -> client (the recipe's `models:` entry); stages use `client(role)` instead
    model: Callable[[str], Any] | None = None
    roles: dict[str, str] = field(default_factory=dict)  # role -> model name in the recipe
    round: int | None = None
    batch: int = 0  # the batch's index in its stage (and round): 0 once per stage run, e.g. for a per-round probe
    advance: Callable[[int], None] = lambda n: None
    # told of every candidate a stage throws away: (candidate record or None, reason, detail)
    on_reject: Callable[[dict[str, Any] | None, str, str], None] | None = None

    def rng(self, *keys: object) -> random.Random:
        """A random generator seeded by the build seed and ``keys`` (e.g. a record id): the same draw on reruns
        and regardless of batch boundaries. Rounds draw afresh: round 2 does not repeat round 1's draws."""
        round_key = f"|r{self.round}" if self.round and self.round > 1 else ""
        return random.Random(f"{self.seed}|{self.stage}{round_key}|" + "|".join(map(str, keys)))

    def client(self, role: str) -> Any:
        """The model client for ``role`` (mapped to a recipe model by the build)."""
        if self.model is None:
            raise RuntimeError(
                f"stage {self.stage!r} needs a model for role {role!r}, but the recipe has no `models:`"
            )
        return self.model(self.roles.get(role, role))

    def reject(self, reason: str, candidate: dict[str, Any] | None = None, detail: str = "", n: int = 1) -> None:
        """Count a thrown-away candidate; with ``candidate`` (a record-like dict) it also reaches the dropped
        table, so a user can read why their yield is low."""
        self.funnel.reject(self.stage, reason, n)
        if candidate is not None and self.on_reject is not None:
            self.on_reject(candidate, reason, detail)


@lru_cache(maxsize=1)
def _plugins() -> dict[str, Any]:
    """Stages installed by other packages (entry-point group ``mathaug.stages``), by method name."""
    found: dict[str, Any] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in REGISTRY:
            found[ep.name] = ep
    return found


@lru_cache(maxsize=64)
def get_stage(method: str) -> StageDef:
    if method in REGISTRY:
        return StageDef.of(importlib.import_module(REGISTRY[method]), method)
    plugin = _plugins().get(method)
    if plugin is None:
        raise KeyError(f"unknown stage method {method!r}; known: {known_methods()}")
    return StageDef.of(plugin.load(), method)


def known_methods() -> list[str]:
    return sorted({*REGISTRY, *_plugins()})
