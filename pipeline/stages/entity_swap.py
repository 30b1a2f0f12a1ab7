"""Consistent entity substitution: the same problem with other people (and optionally places) in it.

Numbers and operations are untouched, so the answer is the parent's; names are swapped only within the list
they came from (female / male / neutral) so the problem's pronouns stay right, and one name always maps to one
substitute within a problem (question and solution alike). Cultural-swap method: arXiv 2503.18018.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.records import derive
from pipeline.stages import StageContext

NAME = "entity_swap"
VERSION = "1"

NAME_LISTS = ("female", "male", "neutral")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variants_per_seed: int = Field(1, ge=1, le=20)
    entities: list[Literal["names", "cities"]] = Field(default_factory=lambda: ["names"])
    lists: dict[str, str] = Field(
        default_factory=dict, description="override a list file: female, male, neutral, cities -> path"
    )


@lru_cache(maxsize=16)
def _read_list(path: str) -> tuple[str, ...]:
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"entity list {path} not found")
    return tuple(dict.fromkeys(file.read_text(encoding="utf-8").split()))


def load_lists(params: Params, data_dir: Path) -> dict[str, tuple[str, ...]]:
    """Category -> names; a name found in several gendered lists is treated as neutral."""
    wanted = [*NAME_LISTS] if "names" in params.entities else []
    if "cities" in params.entities:
        wanted.append("cities")
    lists = {
        cat: _read_list(params.lists.get(cat, str(data_dir / "names" / f"{cat}.txt"))) for cat in wanted
    }
    if "names" in params.entities:
        counts = Counter(n for cat in NAME_LISTS for n in set(lists[cat]))
        shared = {n for n, c in counts.items() if c > 1}
        for cat in ("female", "male"):
            lists[cat] = tuple(n for n in lists[cat] if n not in shared)
        lists["neutral"] = tuple(dict.fromkeys([*lists["neutral"], *sorted(shared)]))
    return lists


def find_entities(text: str, lists: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Entity -> its category, for every listed entity that occurs capitalised in ``text``."""
    tokens = set(re.findall(r"[A-Z][a-zA-Z]+", text))
    return {tok: cat for cat, names in lists.items() for tok in tokens if tok in set(names)}


def swap(text: str, mapping: dict[str, str]) -> str:
    if not mapping:
        return text
    pattern = re.compile("|".join(rf"(?<![\w-]){re.escape(k)}(?![\w-])" for k in sorted(mapping, key=len)[::-1]))
    return pattern.sub(lambda m: mapping[m.group(0)], text)


def run(records: list[dict[str, Any]], params: Params, ctx: StageContext) -> list[dict[str, Any]]:
    lists = load_lists(params, ctx.data_dir)
    out: list[dict[str, Any]] = []
    for rec in records:
        ctx.funnel.add(ctx.stage, "in")
        question, solution = rec["question"], rec.get("solution") or ""
        found = find_entities(question, lists)
        if not found:
            ctx.funnel.reject(ctx.stage, "no_entities")
            ctx.advance(1)
            continue
        present = set(re.findall(r"[A-Z][a-zA-Z]+", question + " " + solution))
        rng = ctx.rng(rec["id"])
        made: set[str] = set()
        for k in range(params.variants_per_seed):
            mapping: dict[str, str] = {}
            for entity, cat in sorted(found.items()):
                pool = [n for n in lists[cat] if n not in present and n not in mapping.values()]
                if not pool:
                    break
                mapping[entity] = rng.choice(pool)
            if len(mapping) != len(found):
                ctx.funnel.reject(ctx.stage, "list_exhausted")
                continue
            new_q, new_s = swap(question, mapping), swap(solution, mapping)
            if NUMBER.findall(new_q) != NUMBER.findall(question) or NUMBER.findall(new_s) != NUMBER.findall(solution):
                ctx.funnel.reject(ctx.stage, "numbers_changed")
                continue
            if new_q in made:
                ctx.funnel.reject(ctx.stage, "repeated_variant")
                continue
            made.add(new_q)
            out.append(
                derive(
                    rec,
                    question=new_q,
                    solution=new_s or None,
                    answer=rec.get("answer"),
                    method=NAME,
                    method_params={**params.model_dump(), "variant": k, "mapping": mapping, "version": VERSION},
                    verification={
                        "status": "verified" if rec["verification"]["status"] in ("verified", "gold") else "unverified",
                        "method": "inherited",
                        "detail": f"numbers unchanged from parent {rec['id']}; swapped {len(mapping)} entities",
                    },
                )
            )
            ctx.funnel.add(ctx.stage, "generated")
        ctx.advance(1)
    return out
