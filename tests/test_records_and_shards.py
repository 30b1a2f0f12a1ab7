"""Record schema and shard writer: ids are content hashes, shards are atomic and loadable by datasets/pandas."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.io.shards import ShardWriter, read_manifest, read_records, sha256_file, shard_paths
from pipeline.records import SCHEMA, derive, make_record, record_id, to_table


def _rec(i: int) -> dict:
    return make_record(
        question=f"Tom has {i} apples. How many?", solution=f"He has {i}.\n#### {i}", answer=str(i), method="seed",
        source={"dataset": "toy", "split": "train", "seed_id": f"toy:{i}"},
        verification={"status": "gold", "method": "gold"},
    )


def test_record_id_is_content_hash_and_whitespace_insensitive():
    a = record_id("What is 1+1?", "2", "2")
    assert a == record_id("What  is 1+1? ", "2", "2")
    assert a != record_id("What is 1+2?", "3", "3")
    assert len(a) == 32


def test_derive_links_parent_and_keeps_source():
    parent = _rec(3)
    child = derive(parent, question="Ann has 3 apples. How many?", solution="#### 3", answer="3", method="entity_swap")
    assert child["parent_ids"] == [parent["id"]]
    assert child["source"] == parent["source"]
    assert child["messages"][0] == {"role": "user", "content": "Ann has 3 apples. How many?"}
    assert child["id"] != parent["id"]


def test_to_table_rejects_fields_outside_schema():
    rec = _rec(1)
    rec["my_column"] = 1
    with pytest.raises(ValueError, match="my_column"):
        to_table([rec])


def test_shards_manifest_and_loaders(tmp_path):
    recs = [_rec(i) for i in range(25)]
    with ShardWriter(tmp_path, rows_per_shard=10, run_id="r1") as writer:
        writer.write(recs)
    manifest = read_manifest(tmp_path)
    assert manifest["complete"] is True
    assert [s["rows"] for s in manifest["shards"]] == [10, 10, 5]
    for shard in manifest["shards"]:
        path = tmp_path / shard["path"]
        assert sha256_file(path) == shard["sha256"]
        assert pq.read_schema(path).names == SCHEMA.names
    assert not list(tmp_path.rglob("*.tmp-*"))
    assert [r["id"] for r in read_records(tmp_path)] == [r["id"] for r in recs]

    import datasets

    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "data"), split="train")
    assert len(ds) == 25 and ds[0]["messages"][0]["role"] == "user"
    df = pd.concat(pd.read_parquet(p) for p in shard_paths(tmp_path))
    assert df["id"].is_unique and len(df) == 25


def test_a_failed_write_publishes_nothing_and_keeps_the_previous_dataset(tmp_path):
    recs = [_rec(i) for i in range(15)]
    with ShardWriter(tmp_path, rows_per_shard=5, run_id="r1") as writer:
        writer.write(recs[:7])
    before = json.loads((tmp_path / "manifest.json").read_text())
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, rows_per_shard=5, run_id="r2") as writer:
            writer.write(recs)
            assert len(list(writer.data_dir.glob("*.parquet"))) == 3  # written, but not where readers look
            raise RuntimeError("boom")
    assert json.loads((tmp_path / "manifest.json").read_text()) == before  # readers see the previous dataset
    assert [r["id"] for r in read_records(tmp_path)] == [r["id"] for r in recs[:7]]
    assert len(list((tmp_path / ".mathaug" / "generations").iterdir())) == 1  # the failed one is gone


def test_publishing_switches_data_in_one_rename_and_keeps_foreign_files(tmp_path):
    with ShardWriter(tmp_path, rows_per_shard=5, run_id="r1") as writer:
        writer.write([_rec(i) for i in range(12)])
    (tmp_path / "data" / "notes.txt").write_text("mine")  # a user's file inside data/
    old_target = (tmp_path / "data").resolve()
    with ShardWriter(tmp_path, rows_per_shard=5, run_id="r2") as writer:
        writer.write([_rec(i) for i in range(4)])
    assert (tmp_path / "data").is_symlink() and (tmp_path / "data").resolve() != old_target
    assert not old_target.exists()  # the retired generation held nothing else of the user's
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["notes.txt", "train-00000.parquet"]
    assert (tmp_path / "data" / "notes.txt").read_text() == "mine"
    assert len(list(read_records(tmp_path))) == 4
