"""``mathaug dedup`` / ``mathaug decontaminate`` end to end on real files."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.dedup.commands import run_dedup
from pipeline.io.shards import read_manifest, read_records

JANET = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
    "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. "
    "How much in dollars does she make every day at the farmers' market?"
)
OTHERS = [
    f"A farmer has {n} cows and buys {n + 3} more at the market on Tuesday. How many cows does the farmer own now?"
    for n in range(5, 25)
]


@pytest.fixture
def jsonl(tmp_path):
    rows = [{"question": q, "answer": "1"} for q in OTHERS]  # 20 number variants: all distinct
    rows += [{"question": OTHERS[0].upper(), "answer": "1"}]  # exact duplicate after normalisation
    rows += [{"question": OTHERS[1].replace("Tuesday", "a Tuesday"), "answer": "1"}]  # near duplicate
    rows += [{"question": JANET.replace("16", "15"), "answer": "1"}]  # an edited GSM8K test question
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_dedup_then_decontaminate(jsonl, tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["dedup", str(jsonl), "--out", str(tmp_path / "dedup")])
    assert result.exit_code == 0, result.output
    assert "kept 21 of 23 rows" in flat(result)
    manifest = read_manifest(tmp_path / "dedup")
    assert manifest["complete"] and manifest["rows"] == 21
    assert manifest["dedup"]["duplicates"] == 2 and manifest["funnel"]["external"]["duplicates"] == 2
    # the keep rule may keep either spelling of a pair (smallest id): look rows up case-folded
    folded = {r["question"].lower(): r["dedup"]["dropped"] for r in read_records(tmp_path / "dedup")}
    assert folded[OTHERS[2].lower()] == 0
    assert folded[OTHERS[0].lower()] == 1
    assert folded.get(OTHERS[1].lower(), folded.get(OTHERS[1].replace("Tuesday", "a Tuesday").lower())) == 1

    result = runner.invoke(app, ["decontaminate", str(tmp_path / "dedup"), "--out", str(tmp_path / "clean")])
    assert result.exit_code == 0, result.output
    assert "kept 20 of 21 rows" in flat(result) and "gsm8k-test: 1" in flat(result)
    report = (tmp_path / "clean" / ".mathaug" / "contaminated.jsonl").read_text().splitlines()
    assert [json.loads(line)["benchmark_item"] for line in report] == ["gsm8k-test:1"]
    assert read_manifest(tmp_path / "clean")["rows"] == 20


def test_dedup_against_earlier_output(jsonl, tmp_path) -> None:
    first = run_dedup(jsonl, tmp_path / "first")
    again = run_dedup(jsonl, tmp_path / "second", against=[tmp_path / "first"])
    assert first["kept"] == 21 and again["kept"] == 0


def flat(result) -> str:
    return " ".join(result.output.split())  # rich wraps long lines


def test_bad_paths_are_clear_errors(jsonl, tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["dedup", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no such file" in flat(result)
    out = tmp_path / "o"
    run_dedup(jsonl, out)
    result = runner.invoke(app, ["dedup", str(out), "--out", str(out)])
    assert result.exit_code == 2 and "different directory" in flat(result)
    result = runner.invoke(app, ["dedup", str(jsonl), "--out", str(tmp_path / "p"), "--threshold", "0"])
    assert result.exit_code == 2 and "threshold" in flat(result)
