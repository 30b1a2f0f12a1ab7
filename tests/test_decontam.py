"""Decontamination against the shipped fingerprints (works without the shared data folder)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.dedup import contaminated, decontaminate
from pipeline.dedup.decontam import FINGERPRINTS_DIR, Decontaminator, Fingerprint, build_fingerprint
from pipeline.funnel import Funnel
from pipeline.records import make_record

SHARED = Path("/work/shared/data")

# GSM8K test line 1 and MATH500 "test/precalculus/807.json" (both MIT), and a GSM8K train question
JANET = (
    "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
    "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. "
    "How much in dollars does she make every day at the farmers' market?"
)
POLAR = (
    "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.  Enter your answer in the form "
    "$(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$"
)
TRAIN = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many "
    "clips did Natalia sell altogether in April and May?"
)


def test_shipped_fingerprints_have_sources_and_licences() -> None:
    for name, items in (("gsm8k-test", 1319), ("math500", 500)):
        directory = FINGERPRINTS_DIR / name
        meta = json.loads((directory / "meta.json").read_text())
        assert meta["items"] == items == len(meta["ids"])
        assert len(meta["source_sha256"]) == 64
        assert "MIT" in (directory / "LICENSE").read_text()
        assert sum(p.stat().st_size for p in directory.iterdir()) < 3_000_000


def test_exact_and_lightly_edited_test_questions_are_caught() -> None:
    reworded = JANET.replace("Janet\u2019s ducks lay", "Suppose the ducks of Janet lay").replace("16", "18")
    hits = contaminated(
        [JANET, reworded, POLAR.replace("(0,3)", "(0,4)").replace("Convert", "Please convert")]
    )
    assert hits == ["gsm8k-test:1", "gsm8k-test:1", "math500:test/precalculus/807.json"]


def test_train_questions_and_other_text_are_not_flagged() -> None:
    assert contaminated([TRAIN, "What is 2 + 2?", ""]) == [None, None, None]


def test_formula_changes_are_not_contamination() -> None:
    """Same wording as a MATH500 problem but another formula: a different problem."""
    other = POLAR.replace("(0,3)", "(\\sqrt{2}, -\\sqrt{2})").replace("r > 0", "r \\ge 1")
    assert contaminated([other]) == [None]


def test_decontaminate_step_drops_and_counts() -> None:
    rows = [
        make_record(question=JANET.replace("16", "17"), solution="s", answer="1", method="persona"),
        make_record(question=TRAIN, solution="s", answer="72", method="seed"),
    ]
    funnel = Funnel()
    seen: list[tuple[str, str]] = []
    kept = list(
        decontaminate(rows, funnel=funnel, on_contaminated=lambda r, item: seen.append((r["id"], item)))
    )
    assert [r["id"] for r in kept] == [rows[1]["id"]]
    assert funnel.get("persona", "contaminated") == 1 and funnel.get("seed", "contaminated") == 0
    assert seen == [(rows[0]["id"], "gsm8k-test:1")]


def test_mismatched_fingerprints_are_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="rebuild them"):
        Decontaminator(ngram=8)
    with pytest.raises(FileNotFoundError, match="build_fingerprints"):
        Decontaminator(("nope",), fingerprints_dir=tmp_path)


def test_boilerplate_ngrams_are_left_out() -> None:
    boiler = (
        "The answer can be written as m/n, where m and n are relatively prime positive integers. Find m+n."
    )
    items = [("a", "A circle has area 17 and a chord of length 3. " + boiler)]
    reference = ["Some other problem about 5 cats. " + boiler, "A third problem with 9 dogs. " + boiler]
    plain = build_fingerprint("x", items)
    filtered = build_fingerprint("x", items, reference_texts=reference)
    assert len(filtered.ngrams) < len(plain.ngrams)
    probe = ["A new problem about 4 trains. " + boiler]
    # threshold 0.99 leaves only the n-gram rule in play
    assert Decontaminator(fingerprints=[filtered], threshold=0.99).check(probe) == [None]
    assert Decontaminator(fingerprints=[plain], threshold=0.99).check(probe) == ["x:a"]


@pytest.mark.skipif(not (SHARED / "gsm8k" / "test.jsonl").exists(), reason="shared data folder not present")
def test_script_rebuilds_the_shipped_fingerprints(tmp_path) -> None:
    from scripts.build_fingerprints import main

    assert main(["--source", str(SHARED), "--out", str(tmp_path)]) == 0
    for name in ("gsm8k-test", "math500"):
        built = Fingerprint.load(tmp_path / name)
        shipped = Fingerprint.load(FINGERPRINTS_DIR / name)
        assert built.ids == shipped.ids
        assert np.array_equal(built.ngrams, shipped.ngrams)
        assert np.array_equal(built.signatures, shipped.signatures)
        source = SHARED / shipped.meta["source_file"]
        assert hashlib.sha256(source.read_bytes()).hexdigest() == shipped.meta["source_sha256"]
