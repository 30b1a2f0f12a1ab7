"""recipes/persona.yaml end to end through the build, on the `vllm` backend (in-process engine) and on the
`openai` backend (vLLM's server), with the tiny random model: the run completes, counts and tokens agree with the
request cache (and with the server's own metrics), nothing verifies, and rerunning sends zero requests."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.build import run_build
from pipeline.llm import cache_stats
from pipeline.paths import RECIPES_DIR
from pipeline.recipe import Recipe, parse_recipe
from tests.fixtures.vllm_server import VLLMServer

pytestmark = pytest.mark.slow

SEEDS = 6
SERVER_METRICS = ("vllm:request_success_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total")


def persona_recipe(monkeypatch: pytest.MonkeyPatch, **env: str) -> Recipe:
    """The shipped recipe, pointed at the tiny model through its environment variables. Random weights never
    keep the seed's numbers, so the quantity check is off here to let rewrites reach the solve step."""
    env = {"MATHAUG_MAX_MODEL_LEN": "2048", "MATHAUG_ENFORCE_EAGER": "true", "MATHAUG_MAX_TOKENS": "48",
           "MATHAUG_REWRITE_MAX_TOKENS": "48", **env}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    data = yaml.safe_load((RECIPES_DIR / "persona.yaml").read_text())
    data["stages"][0]["params"]["check_quantities"] = False
    return parse_recipe(yaml.safe_dump(data), source="persona.yaml", base_dir=RECIPES_DIR)


def cache_totals(out: Path) -> dict[str, int]:
    db = sqlite3.connect(out / ".mathaug" / "llm_cache.sqlite")
    entries = [json.loads(r) for (r,) in db.execute("SELECT response FROM entries")]
    db.close()
    return {
        "entries": len(entries),
        "tokens_in": sum(e["prompt_tokens"] for e in entries),
        "tokens_out": sum(e["completion_tokens"] for e in entries),
    }


def check_first_run(result: Any, out: Path) -> dict[str, float]:
    f = {
        k: result.funnel.get("persona", k) for k in ("in", "generated", "rejected", "requests", "cache_hits")
    }
    f.update(
        tokens_in=result.funnel.get("persona", "tokens_in"),
        tokens_out=result.funnel.get("persona", "tokens_out"),
    )
    assert f["in"] == SEEDS and f["generated"] == 0  # random weights: nothing verifies
    assert f["rejected"] == SEEDS * 2  # every (seed, persona) candidate is rejected, each for one reason
    reasons = result.funnel.reasons("persona")
    # garbage fails the rewrite's question gates (truncated, not a question, lost quantities ...) or later steps
    assert sum(reasons.values()) == SEEDS * 2
    assert all(r.startswith("rewrite_") or r in {"no_majority", "wrong_answer", "reflection_failed", "request_error"}
               for r in reasons), reasons
    assert result.funnel.get("persona", "request_errors") == 0
    totals = cache_totals(out)
    # every request sent was answered and cached once: the funnel's counts are the cache's
    assert f["requests"] == totals["entries"] > SEEDS * 2  # rewrites, their re-asks, and solves
    assert f["tokens_in"] == totals["tokens_in"] > 0 and f["tokens_out"] == totals["tokens_out"] > 0
    assert result.manifest["funnel"]["persona"]["requests"] == f["requests"]
    return f


def check_rerun_sends_nothing(recipe: Recipe, out: Path, first: dict[str, float]) -> None:
    resumed = run_build(recipe, out, limit=SEEDS)  # finished batches are kept
    assert resumed.computed_batches == 0
    again = run_build(recipe, out, limit=SEEDS, fresh=True)  # recomputes the stage; the request cache stays
    assert again.computed_batches > 0 and again.funnel.get("persona", "requests") == 0
    assert again.funnel.get("persona", "cache_hits") == first["requests"] + first["cache_hits"]
    assert again.funnel.get("persona", "tokens_out") == 0
    stats = cache_stats(out / ".mathaug" / "llm_cache.sqlite")["stages"]["persona"]
    assert stats["misses"] == 0 and stats["hits"] == first["requests"] + first["cache_hits"]


def test_persona_recipe_on_vllm_backend(
    tiny_vllm_models: dict, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pipeline.llm.vllm_backend import _ENGINES

    recipe = persona_recipe(monkeypatch, MATHAUG_BACKEND="vllm", MATHAUG_MODEL=str(tiny_model_dir))
    assert recipe.models["teacher"] == tiny_vllm_models["teacher"].model_copy(
        update={"base_url": recipe.models["teacher"].base_url}
    )
    out = tmp_path / "out"
    first = check_first_run(run_build(recipe, out, limit=SEEDS), out)
    assert len(_ENGINES) == 1  # the build reused the session's engine: one engine per model per process
    check_rerun_sends_nothing(recipe, out, first)


def test_persona_recipe_on_openai_backend(
    tiny_server: VLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recipe = persona_recipe(
        monkeypatch,
        MATHAUG_BACKEND="openai",
        MATHAUG_MODEL=tiny_server.served_name,
        MATHAUG_BASE_URL=tiny_server.base_url,
    )
    out = tmp_path / "out"
    before = [tiny_server.metric(m) for m in SERVER_METRICS]
    first = check_first_run(run_build(recipe, out, limit=SEEDS), out)
    after = [tiny_server.metric(m) for m in SERVER_METRICS]
    assert after[2] - before[2] == first["tokens_out"]  # the server generated exactly what we counted
    check_rerun_sends_nothing(recipe, out, first)
    assert [tiny_server.metric(m) for m in SERVER_METRICS] == after  # and the reruns reached it not once
