"""The whole build, run directly (the Prefect path is tested in test_flows): real seeds in, loadable shards out."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from pipeline.build import BuildError, IncompatibleRunError, run_build
from pipeline.io.seeds import SeedError
from pipeline.io.shards import read_manifest, read_records
from pipeline.paths import RECIPES_DIR, ROOT
from pipeline.recipe import load_recipe, parse_recipe


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "out"
    recipe = load_recipe(RECIPES_DIR / "quickstart.yaml")
    return recipe, out, run_build(recipe, out)


def test_quickstart_rows_are_verified_with_provenance(quickstart):
    recipe, out, result = quickstart
    rows = list(read_records(out))
    assert len(rows) == result.rows > 800  # symbolic links only what is certain (issue 11): fewer variants
    methods = {r["method"] for r in rows}
    assert methods == {"seed", "symbolic", "entity_swap", "fobar"}
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    for r in rows:
        assert r["verification"]["status"] in {"verified", "gold"}
        assert r["source"]["dataset"] == "gsm8k" and r["source"]["seed_id"]
        assert r["run_id"] == result.run_id
        assert (r["method"] == "seed") == (not r["parent_ids"])
    manifest = read_manifest(out)
    assert manifest["complete"] and manifest["rows"] == len(rows)
    assert manifest["funnel"]["symbolic"]["kept"] == sum(r["method"] == "symbolic" for r in rows)
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: mit") and "data/train-*.parquet" in card and "GSM-Symbolic" in card
    dropped = manifest["dropped"]["rows"]
    # every removed row, and every candidate a stage threw away with its text (by_step "stage:<name>")
    candidates = sum(n for step, n in manifest["dropped"]["by_step"].items() if step.startswith("stage:"))
    assert dropped == candidates + sum(f.get("duplicates", 0) + f.get("contaminated", 0) + f.get("failed", 0)
                                       for f in manifest["funnel"].values())
    assert candidates <= sum(f.get("rejected", 0) for f in manifest["funnel"].values())
    assert f"kept aside in `dropped/`: {dropped:,} rows" in card


def test_output_loads_with_datasets(quickstart):
    import datasets

    _, out, result = quickstart
    ds = datasets.load_dataset("parquet", data_dir=str(out / "data"), split="train")
    assert len(ds) == result.rows
    assert ds[0]["messages"][1]["role"] == "assistant"


def test_rerun_resumes_and_gives_same_ids(quickstart, tmp_path):
    recipe, out, first = quickstart
    first_ids = sorted(r["id"] for r in read_records(out))
    again = run_build(recipe, out)
    assert again.resumed_batches > 0 and again.computed_batches == 0
    assert sorted(r["id"] for r in read_records(out)) == first_ids
    third = run_build(recipe, tmp_path / "fresh")
    assert sorted(r["id"] for r in read_records(tmp_path / "fresh")) == first_ids
    assert third.run_id != first.run_id


def test_resume_after_lost_batches_is_identical(quickstart):
    recipe, out, _ = quickstart
    before = sorted((r["id"], r["question"]) for r in read_records(out))
    batches = sorted((out / ".mathaug/stages").rglob("*.parquet"))
    for path in batches[::2]:  # as if the build had died before these batches finished
        path.unlink()
    result = run_build(recipe, out)
    assert result.computed_batches == len(batches[::2])
    assert sorted((r["id"], r["question"]) for r in read_records(out)) == before


def test_incompatible_recipe_is_refused_with_keys(quickstart):
    recipe, out, _ = quickstart
    changed = recipe.model_copy(deep=True)
    changed.stages[0].params["variants_per_seed"] = 5
    with pytest.raises(IncompatibleRunError, match=r"stages\.0\.params\.variants_per_seed"):
        run_build(changed, out)


def test_foreign_nonempty_dir_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match="not empty"):
        run_build(load_recipe(RECIPES_DIR / "quickstart.yaml"), tmp_path)
    assert (tmp_path / "notes.txt").exists()


def test_bad_seed_file_fails_before_any_shard(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    good = json.dumps({"question": "Tom has 2 apples and 3 pears. How many?", "answer": "2+3=<<2+3=5>>5\n#### 5"})
    seeds.write_text(good + "\n" + '{"question": "x", "answer": "no gold"}\n')
    recipe = parse_recipe(f"name: bad\nseeds:\n  - {{format: gsm8k, path: {seeds}}}\n")
    with pytest.raises(SeedError, match=r"seeds\.jsonl:2: field 'answer': unreadable gold answer"):
        run_build(recipe, tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*.parquet"))
    result = run_build(recipe, tmp_path / "out2", skip_bad_rows=True)
    assert result.rows == 1 and result.funnel.reasons("seed") == {"bad_row": 1}


def test_cli_error_is_one_line_and_inspect_works(quickstart, tmp_path):
    seeds = tmp_path / "s.jsonl"
    seeds.write_text('{"question": "q"\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: bad\nseeds:\n  - {{format: gsm8k, path: {seeds}}}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "build", str(recipe), "--out", str(tmp_path / "o"), "--direct"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 2
    error_lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1 and "s.jsonl:1: invalid JSON" in error_lines[0]
    _, out, _ = quickstart
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "inspect", str(out)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "symbolic" in proc.stdout and "verified" in proc.stdout
    assert pq.read_metadata(next((out / "data").glob("*.parquet"))).num_rows > 0


def test_every_dropped_row_is_kept_aside_with_its_reason(tmp_path):
    """verify failures, exact and near duplicates and benchmark overlaps land in OUT/dropped, one row each,
    matching the funnel; a duplicate names the row kept in its place."""
    rows = [
        {"question": "Tom has 2 apples and buys 3 more. How many apples does Tom have now?",
         "solution": "2 + 3 = 5. The answer is 5.", "answer": "5"},
        {"question": "tom has 2 apples and buys 3 more.  How many apples does Tom have now",  # exact dup
         "solution": "He has 2 + 3 = 5 apples. The answer is 5.", "answer": "5"},
        {"question": "A farmer plants 12 rows of corn with 30 plants in each row, and then he plants "
                     "12 more plants by the fence. How many corn plants did the farmer plant in total?",
         "solution": "12 * 30 + 12 = 372. The answer is 372.", "answer": "372"},
        {"question": "A farmer plants 12 rows of corn with 30 plants in each row, and then she plants "
                     "12 more plants by the fence. How many corn plants did the farmer plant in total?",  # near dup
         "solution": "12 * 30 = 360 and 360 + 12 = 372. The answer is 372.", "answer": "372"},
        {"question": "Sam reads 4 pages a day for 6 days. How many pages does he read?",
         "solution": "4 * 6 = 24. The answer is 25.", "answer": "24"},  # fails verification
        {"question": "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
                     "muffins for her friends every day with four. She sells the remainder at the farmers' market "
                     "daily for $2 per fresh duck egg. How much in dollars does she make every day at the "
                     "farmers' market?",  # GSM8K test
         "solution": "16 - 3 - 4 = 9 eggs, 9 * 2 = 18. The answer is 18.", "answer": "18"},
    ]
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = (f"name: drops\nseeds:\n  - {{format: jsonl, path: {seeds}}}\n"
            "dedup: {exact: true, max_solutions_per_question: 1, near: {threshold: 0.7}}\n")
    result = run_build(parse_recipe(text), tmp_path / "out")
    dropped = pq.read_table(tmp_path / "out" / "dropped").to_pylist()
    by_step = {}
    for row in dropped:
        by_step.setdefault(row["dropped_by"], []).append(row)
    assert {step: len(v) for step, v in by_step.items()} == {
        "verify": 1, "exact_dedup": 1, "near_dedup": 1, "decontaminate": 1
    }
    funnel = result.funnel.get("seed", "failed") + result.funnel.get("seed", "duplicates") + result.funnel.get(
        "seed", "contaminated"
    )
    assert funnel == len(dropped) == read_manifest(tmp_path / "out")["dropped"]["rows"]
    kept = {r["id"]: r for r in read_records(tmp_path / "out")}
    assert len(kept) == result.rows == 2 and not set(kept) & {r["id"] for r in dropped}
    assert "Sam reads" in by_step["verify"][0]["question"] and "25" in by_step["verify"][0]["drop_detail"]
    assert "Janet" in by_step["decontaminate"][0]["question"] and by_step["decontaminate"][0]["drop_detail"]
    for step in ("exact_dedup", "near_dedup"):
        (row,) = by_step[step]
        assert row["duplicate_of"] in kept and row["duplicate_of"] != row["id"]
        assert kept[row["duplicate_of"]]["question"][:10].lower() == row["question"][:10].lower()

    off = parse_recipe(text + "output: {keep_dropped: false}\n")
    run_build(off, tmp_path / "off")
    assert not (tmp_path / "off" / "dropped").exists() and "dropped" not in read_manifest(tmp_path / "off")


def test_a_run_started_before_a_new_recipe_option_still_resumes(quickstart):
    """Upgrading mathaug adds recipe options; a run whose stored recipe lacks one (at its default) resumes."""
    recipe, out, _ = quickstart
    state_path = out / ".mathaug" / "run.json"
    state = json.loads(state_path.read_text())
    del state["payload"]["recipe"]["output"]["keep_dropped"]  # as written by a mathaug without the option
    state_path.write_text(json.dumps(state))
    assert run_build(recipe, out).computed_batches == 0
    changed = recipe.model_copy(deep=True)
    changed.output.keep_dropped = False  # not the default: a real difference, named
    with pytest.raises(IncompatibleRunError, match=r"output\.keep_dropped"):
        run_build(changed, out)
