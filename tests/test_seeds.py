"""Seed loading: the shipped formats, field mappings, and errors that name file, line and field."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.io.seeds import LoadReport, SeedError, SeedSpec, gsm8k_gold, last_boxed, load_seeds
from pipeline.paths import DATA_DIR

GSM = {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2+3=<<2+3=5>>5\n#### 5"}


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_gsm8k_sample_shipped_loads():
    recs = load_seeds(SeedSpec(format="gsm8k", path=str(DATA_DIR / "seeds/gsm8k_train_sample.jsonl")))
    assert len(recs) == 400
    assert all(r["verification"]["status"] == "gold" for r in recs)
    assert recs[0]["source"]["seed_id"] == "gsm8k_train_sample:1"
    assert recs[0]["answer"] == gsm8k_gold(recs[0]["solution"])


def test_gold_parsers():
    assert gsm8k_gold("so\n#### 1,234") == "1234"
    assert gsm8k_gold("no gold here") is None
    assert last_boxed(r"x \boxed{\frac{1}{2}} then \boxed{3^{2}}") == "3^{2}"


def test_math_format_uses_answer_or_boxed(tmp_path):
    path = _jsonl(tmp_path / "m.jsonl", [
        {"problem": "Compute 1/2+1/2.", "solution": r"It is $\boxed{1}$.", "subject": "Algebra", "level": 1},
        {"problem": "Compute 2+2.", "solution": "4", "answer": "4", "subject": "Prealgebra", "level": 2},
    ])
    recs = load_seeds(SeedSpec(format="math", path=str(path)))
    assert [r["answer"] for r in recs] == ["1", "4"]
    assert recs[0]["source"]["subject"] == "Algebra" and recs[0]["difficulty"] == "Level 1"


def test_generic_formats_with_field_mapping(tmp_path):
    rows = [{"q": "What is 6*7?", "a": "42"}, {"q": "What is 1+1?", "a": "2"}]
    spec = {"fields": {"question": "q", "answer": "a"}}
    _jsonl(tmp_path / "s.jsonl", rows)
    (tmp_path / "s.json").write_text(json.dumps(rows))
    with (tmp_path / "s.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["q", "a"])
        w.writeheader()
        w.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet")
    for fmt in ("jsonl", "json", "csv", "parquet"):
        recs = load_seeds(SeedSpec(format=fmt, path=str(tmp_path / f"s.{fmt}"), **spec))
        assert [r["answer"] for r in recs] == ["42", "2"], fmt
        assert recs[0]["question"] == "What is 6*7?"


@pytest.mark.parametrize(
    "content, fmt, expected",
    [
        ([GSM, '{"question": "broken'], "gsm8k", r"s\.jsonl:2: invalid JSON"),
        ([GSM, {"answer": "#### 3"}], "gsm8k", r"s\.jsonl:2: field 'question': missing"),
        ([{"question": "Q?", "answer": "no gold"}], "gsm8k", r"s\.jsonl:1: field 'answer': unreadable gold answer"),
        ([{"problem": "P?", "solution": "no box"}], "math", r"s\.jsonl:1: field 'answer': unreadable gold"),
        ([{"question": "Q?"}], "jsonl", r"s\.jsonl:1: field 'answer': missing gold answer"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, content, fmt, expected):
    path = _jsonl(tmp_path / "s.jsonl", content)
    with pytest.raises(SeedError, match=expected):
        load_seeds(SeedSpec(format=fmt, path=str(path)))


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(SeedError, match="e.jsonl: file is empty"):
        load_seeds(SeedSpec(format="gsm8k", path=str(tmp_path / "e.jsonl")))
    with pytest.raises(SeedError, match="file not found"):
        load_seeds(SeedSpec(format="gsm8k", path=str(tmp_path / "nope.jsonl")))


def test_skip_bad_rows_counts_them(tmp_path):
    path = _jsonl(tmp_path / "s.jsonl", [GSM, "{not json", {"question": "x", "answer": "none"}, GSM])
    report = LoadReport()
    recs = load_seeds(SeedSpec(format="gsm8k", path=str(path)), skip_bad_rows=True, report=report)
    assert len(recs) == 2 and report.skipped == 2
    assert "s.jsonl:2" in report.errors[0]


def test_hf_spec_through_datasets(tmp_path):
    rows = [{"problem": "What is 6*7?", "sol": "6*7=42, so \\boxed{42}."}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    spec = SeedSpec(
        format="hf",
        hf={"path": "parquet", "data_files": str(tmp_path / "train.parquet"), "cache_dir": str(tmp_path / "c")},
        fields={"question": "problem", "solution": "sol"},
        name="local-hf",
    )
    recs = load_seeds(spec)
    assert recs[0]["answer"] == "42" and recs[0]["source"]["dataset"] == "local-hf"
