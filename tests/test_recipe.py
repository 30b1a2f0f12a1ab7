"""Recipe validation: errors carry the file, line and key path."""

from __future__ import annotations

import pytest

from pipeline.paths import RECIPES_DIR
from pipeline.recipe import RecipeError, load_recipe, parse_recipe

BASE = """\
name: t
seeds:
  - format: gsm8k
    path: data/seeds/gsm8k_train_sample.jsonl
stages:
  - method: symbolic
    params: {variants_per_seed: 2}
"""


def test_shipped_recipes_validate():
    for path in RECIPES_DIR.glob("*.yaml"):
        if "persona" in path.name:
            continue  # needs a model path from the environment; covered by the LLM tests
        assert load_recipe(path).name


def test_unknown_key_reported_with_line_and_path():
    text = BASE + "dedup:\n  exact: true\n  nearr: {threshold: 0.8}\n"
    with pytest.raises(RecipeError) as exc:
        parse_recipe(text, source="r.yaml")
    assert "r.yaml:10: dedup.nearr: Extra inputs are not permitted" in str(exc.value)


def test_bad_stage_param_reported_with_path():
    with pytest.raises(RecipeError) as exc:
        parse_recipe(BASE.replace("variants_per_seed: 2", "variants_per_seed: -1"), source="r.yaml")
    assert "r.yaml:7: stages.0.params.variants_per_seed:" in str(exc.value)


def test_unknown_method_and_bad_from():
    with pytest.raises(RecipeError, match="stages.0.method: .*unknown method 'nope'"):
        parse_recipe(BASE.replace("method: symbolic", "method: nope"))
    with pytest.raises(RecipeError, match="stages.0.from: 'later' is not 'seeds' or an earlier stage"):
        parse_recipe(BASE.replace("  - method: symbolic\n", "  - method: symbolic\n    from: [later]\n"))


def test_env_expansion(monkeypatch):
    monkeypatch.setenv("SEEDS", "data/seeds/gsm8k_train_sample.jsonl")
    r = parse_recipe(BASE.replace("path: data/seeds/gsm8k_train_sample.jsonl", "path: ${SEEDS}"))
    assert r.seeds[0].path == "data/seeds/gsm8k_train_sample.jsonl"
    with pytest.raises(RecipeError, match="NOT_SET_VAR"):
        parse_recipe(BASE.replace("path: data/seeds/gsm8k_train_sample.jsonl", "path: ${NOT_SET_VAR}"))
    assert parse_recipe(BASE.replace("data/seeds/gsm8k", "${NOT_SET_VAR:-data/seeds/gsm8k}")).seeds[0].path


def test_invalid_yaml_names_line():
    with pytest.raises(RecipeError, match=r"r.yaml:\d+: invalid YAML"):
        parse_recipe("name: [unclosed\nseeds: 1\n", source="r.yaml")
