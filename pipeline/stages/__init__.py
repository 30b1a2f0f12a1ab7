"""Stages: plain functions over a batch of records.

Every stage module has the same four names, and nothing else is needed to add one:

- ``NAME``: the method name used in recipes and in each row's ``method``.
- ``VERSION``: bump when the stage's output for the same input changes (it is part of the resume key).
- ``Params``: a pydantic model (``extra="forbid"``) of the stage's recipe parameters.
- ``run(records, params, ctx) -> list[dict]``: the new records made from ``records``.

A stage never imports Prefect, never writes files of its own, and counts what it throws away with
``ctx.funnel.reject(ctx.stage, reason)``. LLM stages get model clients through ``ctx.model(name)``.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline.funnel import Funnel
from pipeline.paths import DATA_DIR

# method name -> module; imported lazily so an LLM-free build never imports model libraries.
REGISTRY: dict[str, str] = {
    "symbolic": "pipeline.stages.symbolic",
    "entity_swap": "pipeline.stages.entity_swap",
    "persona": "pipeline.stages.persona",
}


@dataclass
class StageContext:
    """What a stage may use besides its records and parameters."""

    stage: str
    run_id: str = ""
    seed: int = 0
    funnel: Funnel = field(default_factory=Funnel)
    work_dir: Path | None = None
    data_dir: Path = DATA_DIR
    model: Callable[[str], Any] | None = None
    advance: Callable[[int], None] = lambda n: None

    def rng(self, *keys: object) -> random.Random:
        """A random generator seeded by the build seed and ``keys`` (e.g. a record id): the same draw on reruns
        and regardless of batch boundaries."""
        return random.Random(f"{self.seed}|{self.stage}|" + "|".join(map(str, keys)))


def get_stage(method: str) -> ModuleType:
    try:
        module_name = REGISTRY[method]
    except KeyError:
        raise KeyError(f"unknown stage method {method!r}; known: {sorted(REGISTRY)}") from None
    return importlib.import_module(module_name)


def known_methods() -> list[str]:
    return sorted(REGISTRY)
