"""recipes/mathsmith.yaml end to end through the build with the tiny random model, on the in-process vLLM engine
and on vLLM's OpenAI server: every attempt is dropped for a named reason (random weights never write a tagged
problem), nothing is kept, the card names the concept bank's licence, and a rerun sends zero requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.build import run_build
from pipeline.llm import cache_stats
from pipeline.paths import RECIPES_DIR
from pipeline.quality import QUESTION_REASONS
from pipeline.recipe import Recipe, load_recipe
from tests.fixtures.vllm_server import VLLMServer
from tests.test_persona_e2e import cache_totals

pytestmark = pytest.mark.slow

ATTEMPTS = 4
GENERATION_REASONS = {"generate_truncated", "generate_no_problem_tag", "generate_no_rationale_tag",
                      "generate_too_few_features"}


def mathsmith_recipe(monkeypatch: pytest.MonkeyPatch, **env: str) -> Recipe:
    """The shipped recipe on the tiny model; explanations cut to 150 characters keep 5 concepts inside its 2,048-token
    context (a longer prompt is a counted request_error)."""
    env = {"MATHAUG_MAX_MODEL_LEN": "2048", "MATHAUG_ENFORCE_EAGER": "true", "MATHAUG_MAX_TOKENS": "32",
           "MATHAUG_GEN_MAX_TOKENS": "48", "MATHAUG_EXPLANATION_CHARS": "150", **env}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_recipe(RECIPES_DIR / "mathsmith.yaml")


def check_build(recipe: Recipe, out: Path) -> dict[str, float]:
    result = run_build(recipe, out, limit=ATTEMPTS)
    f = {k: result.funnel.get("mathsmith", k) for k in ("in", "attempts", "generated", "rejected", "requests",
                                                         "cache_hits", "tokens_out")}
    assert f["in"] == f["attempts"] == ATTEMPTS and f["generated"] == 0 and result.rows == 0
    reasons = result.funnel.reasons("mathsmith")
    assert sum(reasons.values()) == f["rejected"] == ATTEMPTS  # each attempt dropped once, for one named reason
    assert set(reasons) <= GENERATION_REASONS | {f"problem_{r}" for r in QUESTION_REASONS} | {"no_agreement"}
    assert result.funnel.get("mathsmith", "request_errors") == 0
    totals = cache_totals(out)
    assert f["requests"] == totals["entries"] >= ATTEMPTS and f["tokens_out"] == totals["tokens_out"] > 0
    dropped = pq.read_table(out / "dropped").to_pylist()  # every attempt, with what it got to and why
    assert len(dropped) == ATTEMPTS and {d["dropped_by"] for d in dropped} == {"stage:mathsmith"}
    assert all(len(d["concepts"]) == 5 and d["question"] for d in dropped)
    card = (out / "README.md").read_text()
    assert "license: cc-by-sa-3.0" in card and "concept bank planetmath: cc-by-sa-3.0" in card
    # rerun: finished batches are kept; recomputing the stage answers every request from the cache
    assert run_build(recipe, out, limit=ATTEMPTS).computed_batches == 0
    again = run_build(recipe, out, limit=ATTEMPTS, fresh=True)
    assert again.computed_batches > 0 and again.funnel.get("mathsmith", "requests") == 0
    assert again.funnel.get("mathsmith", "cache_hits") == f["requests"] + f["cache_hits"]
    assert again.funnel.reasons("mathsmith") == reasons
    stats = cache_stats(out / ".mathaug" / "llm_cache.sqlite")["stages"]["mathsmith"]
    assert stats["misses"] == 0
    return f


def test_mathsmith_recipe_on_vllm_backend(
    tiny_vllm_models: dict[str, Any], tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pipeline.llm.vllm_backend import _ENGINES

    recipe = mathsmith_recipe(monkeypatch, MATHAUG_BACKEND="vllm", MATHAUG_MODEL=str(tiny_model_dir))
    check_build(recipe, tmp_path / "out")
    assert len(_ENGINES) == 1  # teacher and solver share the session's engine


def test_mathsmith_recipe_on_openai_backend(
    tiny_server: VLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recipe = mathsmith_recipe(monkeypatch, MATHAUG_BACKEND="openai", MATHAUG_MODEL=tiny_server.served_name,
                              MATHAUG_BASE_URL=tiny_server.base_url)
    before = tiny_server.metric("vllm:generation_tokens_total")
    first = check_build(recipe, tmp_path / "out")
    after = tiny_server.metric("vllm:generation_tokens_total")
    assert after - before == first["tokens_out"]  # the server generated exactly what we counted
