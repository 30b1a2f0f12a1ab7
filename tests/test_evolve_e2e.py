"""recipes/evolve.yaml end to end through the build on the `vllm` backend (in-process engine) and over HTTP (vLLM's
OpenAI server), with the tiny random model: the run completes inside its rounds group, every candidate is
rejected for a named reason (random weights verify nothing), counts and tokens agree with the request cache (and
the server's own metrics), and a rerun sends zero requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.build import run_build
from pipeline.llm import cache_stats
from pipeline.paths import RECIPES_DIR
from pipeline.recipe import Recipe, load_recipe
from tests.fixtures.vllm_server import VLLMServer
from tests.test_persona_e2e import cache_totals

pytestmark = pytest.mark.slow

SEEDS = 3
TYPES = ["change_numbers", "upward", "rephrase", "sv", "fobar"]
SERVER_METRICS = ("vllm:request_success_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total")
KNOWN_REASONS = {
    "truncated", "no_problem", "unchanged_question", "unchanged_numbers", "too_short", "too_long",
    "contains_solution", "leaks_answer", "not_a_question", "meta_text", "lost_quantities", "near_copy",
    "statement_is_question", "statement_lacks_answer", "statement_lost_unknown", "no_agreement", "wrong_answer",
    "request_error", "solve_truncated", "solve_no_answer", "no_number_to_mask", "no_gold",
}  # fmt: skip


def evolve_recipe(monkeypatch: pytest.MonkeyPatch, **env: str) -> Recipe:
    env = {"MATHAUG_MAX_MODEL_LEN": "2048", "MATHAUG_ENFORCE_EAGER": "true", "MATHAUG_MAX_TOKENS": "32",
           "MATHAUG_REWRITE_MAX_TOKENS": "48", "MATHAUG_SAMPLES": "2", "MATHAUG_MIN_AGREE": "2", "MATHAUG_ROUNDS": "2",
           "MATHAUG_EVOLVE_TYPES": ",".join(TYPES), **env}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_recipe(RECIPES_DIR / "evolve.yaml")


def check_first_run(result: Any, out: Path) -> dict[str, float]:
    keys = ("in", "generated", "rejected", "requests", "cache_hits", "tokens_in", "tokens_out")
    f = {k: result.funnel.get("evolve", k) for k in keys}
    assert f["in"] == SEEDS and f["generated"] == 0  # random weights: nothing verifies
    reasons = result.funnel.reasons("evolve")
    assert f["rejected"] == SEEDS * len(TYPES) == sum(reasons.values())  # one reason per candidate
    assert set(reasons) <= KNOWN_REASONS, reasons
    assert result.funnel.get("evolve", "request_errors") == 0
    totals = cache_totals(out)
    # rewrites (all but fobar) and their re-asks, then the solver's samples: every request cached once
    assert f["requests"] == totals["entries"] >= SEEDS * (len(TYPES) - 1)
    assert f["tokens_in"] == totals["tokens_in"] > 0 and f["tokens_out"] == totals["tokens_out"] > 0
    assert result.manifest["funnel"]["evolve"]["requests"] == f["requests"]
    dropped = [json.loads(line) for line in _dropped_rows(out)]
    assert {json.loads(d["method_params"])["type"] for d in dropped} <= set(TYPES)
    return f


def _dropped_rows(out: Path) -> list[str]:
    import pyarrow.parquet as pq

    rows = []
    for path in sorted((out / "dropped").glob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            if row["dropped_by"] == "stage:evolve":
                rows.append(json.dumps({"method_params": row["method_params"]}))
    return rows


def check_rerun_sends_nothing(recipe: Recipe, out: Path, first: dict[str, float]) -> None:
    resumed = run_build(recipe, out, limit=SEEDS)
    assert resumed.computed_batches == 0
    again = run_build(recipe, out, limit=SEEDS, fresh=True)  # recomputes the stage; the request cache stays
    assert again.computed_batches > 0 and again.funnel.get("evolve", "requests") == 0
    assert again.funnel.get("evolve", "cache_hits") == first["requests"] + first["cache_hits"]
    assert again.funnel.get("evolve", "tokens_out") == 0
    stats = cache_stats(out / ".mathaug" / "llm_cache.sqlite")["stages"]["evolve"]
    assert stats["misses"] == 0 and stats["hits"] == first["requests"] + first["cache_hits"]


def test_evolve_recipe_on_vllm_backend(
    tiny_vllm_models: dict, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recipe = evolve_recipe(monkeypatch, MATHAUG_BACKEND="vllm", MATHAUG_MODEL=str(tiny_model_dir))
    out = tmp_path / "out"
    result = run_build(recipe, out, limit=SEEDS)
    first = check_first_run(result, out)
    # round 1 made no rows, so the rounds group stopped there (no_new_rows) instead of running round 2
    assert [e["round"] for e in result.manifest["rounds"]["evolve"]] == [1]
    check_rerun_sends_nothing(recipe, out, first)


def test_evolve_recipe_over_http(tiny_server: VLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    recipe = evolve_recipe(monkeypatch, MATHAUG_BACKEND="openai", MATHAUG_MODEL=tiny_server.served_name,
                           MATHAUG_BASE_URL=tiny_server.base_url)
    out = tmp_path / "out"
    before = [tiny_server.metric(m) for m in SERVER_METRICS]
    first = check_first_run(run_build(recipe, out, limit=SEEDS), out)
    after = [tiny_server.metric(m) for m in SERVER_METRICS]
    assert after[2] - before[2] == first["tokens_out"]  # the server generated exactly what we counted
    check_rerun_sends_nothing(recipe, out, first)
    assert [tiny_server.metric(m) for m in SERVER_METRICS] == after  # the reruns reached it not once
