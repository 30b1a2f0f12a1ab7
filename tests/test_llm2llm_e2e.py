"""LLM2LLM on the real vLLM CPU engine: three rounds with two different tiny students (random weights, different
seeds: a checkpoint per round from the recipe), the round counts add up, only original seeds reach the teacher,
the held-out split is graded once per round whatever the batching, nothing is kept from garbage, and a rerun
sends no request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.build import run_build
from pipeline.recipe import parse_recipe
from tests.fixtures.tiny_model import build_tiny_model

# two engines start here (the second student's too): minutes on a shared CPU
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

SEEDS = 4
HELD_OUT = 2


@pytest.fixture(scope="module")
def second_student(tmp_path_factory: pytest.TempPathFactory, tiny_vllm_models: dict[str, Any]) -> Any:
    """The tiny model's architecture with other random weights (seed 1): another student checkpoint."""
    config = tiny_vllm_models["teacher"]
    path = build_tiny_model(tmp_path_factory.mktemp("tiny_student_b"), seed=1, eos_boost=0.02)
    return config.model_copy(update={"model": str(path)})


def write_gsm8k(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n" for r in rows))
    return path


def test_three_rounds_two_tiny_students(
    tiny_vllm_models: dict[str, Any], second_student: Any, tmp_path: Path
) -> None:
    sample = [json.loads(line) for line in Path("data/seeds/gsm8k_train_sample.jsonl").read_text().splitlines()]
    tiny = tiny_vllm_models["teacher"]
    data = {
        "name": "llm2llm-tiny",
        "seeds": [{"format": "gsm8k", "path": str(write_gsm8k(tmp_path / "seeds.jsonl", sample[:SEEDS]))}],
        "models": {"tiny": tiny.model_dump(mode="json"), "tiny_b": second_student.model_dump(mode="json")},
        "stages": [{"rounds": {"name": "llm2llm", "max_rounds": 3, "until": {"no_new_rows": False}},
                    "stages": [{"method": "llm2llm", "from": ["seeds", "llm2llm"],
                                "models": {"teacher": "tiny", "student": "tiny", "solver": "tiny"},
                                "params": {"students": ["tiny", "tiny_b", "tiny"], "per_wrong_seed": 2,
                                           "student_samples": 2, "student_max_tokens": 24, "teacher_max_tokens": 48,
                                           "solver_max_tokens": 24, "reasks": 0,
                                           "held_out": str(write_gsm8k(tmp_path / "held.jsonl",
                                                                       sample[-HELD_OUT:]))}}]}],
        "batch_size": 3,  # two batches per round: the held-out split must still count once
        "decontaminate": {"enabled": False},
    }
    recipe = parse_recipe(yaml.safe_dump(data), base_dir=tmp_path)
    out = tmp_path / "out"
    result = run_build(recipe, out)
    rounds = result.manifest["rounds"]["llm2llm"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    students = [r["models"]["llm2llm"]["student"] for r in rounds]
    assert students == [tiny.model, second_student.model, tiny.model] and tiny.model != second_student.model
    for entry in rounds:
        f = entry["funnel"]["llm2llm"]
        assert f["in"] == f["student_total"] == f["seed_total"] == SEEDS  # nothing kept: the set stays the seeds
        assert f["wrong_seeds"] == SEEDS - f["seed_correct"]
        assert f["teacher_asked"] == 2 * f["wrong_seeds"]  # per_wrong_seed new problems per wrong seed
        assert f["held_out_total"] == HELD_OUT  # batch 0 only
        reasons = {k: v for k, v in f.items() if k.startswith("rejected:")}
        assert sum(reasons.values()) == f["teacher_asked"] and entry["rows"] == 0  # garbage keeps nothing
        assert all(k.startswith("rejected:teacher_") or k.startswith("rejected:solver") for k in reasons)
        assert f["tokens_out"] > 0
    # only original seeds reach the teacher: every thrown-away candidate names a seed as its parent
    seed_ids = {r["id"] for r in pq.read_table(out / "data").to_pylist() if r["method"] == "seed"}
    dropped = pq.read_table(out / "dropped").to_pylist()
    from_stage = [r for r in dropped if r["dropped_by"] == "stage:llm2llm"]
    assert len(from_stage) == sum(r["funnel"]["llm2llm"]["teacher_asked"] for r in rounds)
    assert all(r["parent_ids"] and r["parent_ids"][0] in seed_ids for r in from_stage)
    assert {r["round"] for r in from_stage} <= {1, 2, 3}
    # rerun from scratch: every model request is answered by the request cache
    again = run_build(recipe, out, fresh=True)
    assert again.funnel.get("llm2llm", "requests") == 0
    assert again.funnel.get("llm2llm", "cache_hits") == result.funnel.get("llm2llm", "requests") > 0
