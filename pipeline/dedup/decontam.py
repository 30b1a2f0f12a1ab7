r"""Benchmark decontamination: shipped fingerprints of GSM8K test and MATH500, checked two ways.

1. Any shared word 13-gram (after ``text.tokens`` normalisation, Asymptote ``[asy]`` figure code removed): the
   classic test-set overlap rule. 13-grams that occur in two or more problems of the reference corpus (GSM8K
   train + MATH train) are boilerplate ("where m and n are relatively prime positive integers. Find m+n") and
   are left out of the shipped table, or every MATH-style question would match.
2. A MinHash near-duplicate of a benchmark question: estimated Jaccard over the same unigram+bigram shingles as
   near-dedup ≥ ``DECONTAM_THRESHOLD`` (candidates from ``datasketch.MinHashLSH`` over the shipped signatures),
   with at most ``MAX_NUMBER_CHANGES`` numbers changed and the formulas (text inside ``$…$``, ``\[…\]``, numbers
   masked) at least ``MIN_MATH_SIMILARITY`` alike. This catches short questions (most MATH500 problems have
   fewer than 13 words) and edits that break every 13-gram (a reworded opening plus a changed number). The
   number and formula checks keep template siblings apart: a MATH train problem that reuses a test problem's
   wording around another formula ("f even, g odd: is f(x)g(x) even?" beside the test's "f odd, g even: is
   f(f(g(f(g(f(x)))))) even?") is not flagged; the test problem with one exponent changed is.

Fingerprints live in ``data/benchmarks/<name>/`` (``fingerprints.npz``, ``meta.json``, licences) and are built by
``scripts/build_fingerprints.py`` from the public test files, so a fresh machine needs no dataset download.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from datasketch import MinHashLSH

from pipeline.dedup.minhash import (
    SHINGLES,
    lsh_params,
    minhash_from_shingles,
    shingle_hashes,
    to_lean_minhash,
    token_hashes,
)
from pipeline.dedup.ngrams import ngram_hashes
from pipeline.dedup.text import TOKENIZER_VERSION, tokens
from pipeline.paths import DATA_DIR

FINGERPRINTS_DIR = DATA_DIR / "benchmarks"
DEFAULT_BENCHMARKS = ("gsm8k-test", "math500")
DECONTAM_THRESHOLD = 0.5
MAX_NUMBER_CHANGES = 2
MIN_MATH_SIMILARITY = 0.9
FORMAT_VERSION = 2
_ASY = re.compile(r"\[asy\].*?\[/asy\]", re.S | re.I)
_MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\[(.+?)\\\]|\\\((.+?)\\\)", re.S)


def decontam_tokens(text: str) -> list[str]:
    """Tokens compared against benchmarks: figure code (``[asy]…[/asy]``) says little about the problem."""
    return tokens(_ASY.sub(" ", text or ""))


def formula_tokens(text: str) -> list[str]:
    """Tokens of the formulas (``$…$``, ``$$…$$``, ``\\[…\\]``, ``\\(…\\)``) with every number masked."""
    body = _ASY.sub(" ", text or "")
    segments = [next(g for g in m.groups() if g is not None) for m in _MATH.finditer(body)]
    return ["<n>" if t[0].isdigit() else t for t in tokens(" ".join(segments))]


def _ragged(values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in values], out=offsets[1:])
    flat = np.concatenate(values) if values else np.empty(0, dtype=np.uint64)
    return flat.astype(np.uint64), offsets


def number_hashes(token_lists: Sequence[list[str]]) -> list[np.ndarray]:
    """Each text's numbers as sorted 64-bit token hashes (a multiset)."""
    nums = [[t for t in toks if t[0].isdigit()] for toks in token_lists]
    flat, offsets = token_hashes(nums)
    return [np.sort(flat[offsets[i] : offsets[i + 1]]) for i in range(len(nums))]


def formula_shingles(texts: Sequence[str]) -> list[np.ndarray]:
    """Each text's set of formula unigram+bigram hashes (numbers masked); empty when it has no formula."""
    token_lists = [formula_tokens(t) for t in texts]
    hashes, starts = shingle_hashes(token_lists)
    return [
        np.unique(hashes[starts[i] : starts[i + 1]]).astype(np.uint64)
        if token_lists[i]
        else np.empty(0, np.uint64)
        for i in range(len(texts))
    ]


def number_changes(a: np.ndarray, b: np.ndarray) -> int:
    """How many numbers differ between two sorted number multisets (a changed number counts once)."""
    common = 0
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            common += 1
            i += 1
            j += 1
        elif a[i] < b[j]:
            i += 1
        else:
            j += 1
    return max(len(a), len(b)) - common


def set_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    if not len(a) and not len(b):
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


@dataclass
class Fingerprint:
    """One benchmark: item ids, sorted 13-gram hashes with their item index, MinHash rows per item."""

    name: str
    ids: list[str]
    ngrams: np.ndarray
    ngram_items: np.ndarray
    signatures: np.ndarray
    numbers: list[np.ndarray]
    formulas: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            directory / "fingerprints.npz",
            ngrams=self.ngrams,
            ngram_items=self.ngram_items,
            signatures=self.signatures,
            numbers=_ragged(self.numbers)[0],
            numbers_offsets=_ragged(self.numbers)[1],
            formulas=_ragged(self.formulas)[0],
            formulas_offsets=_ragged(self.formulas)[1],
        )
        (directory / "meta.json").write_text(json.dumps({**self.meta, "ids": self.ids}, indent=1) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Fingerprint:
        meta_path = directory / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(
                f"no benchmark fingerprints at {directory}; build them with scripts/build_fingerprints.py"
            )
        meta = json.loads(meta_path.read_text())
        ids = meta.pop("ids")
        with np.load(directory / "fingerprints.npz") as arrays:
            return cls(
                name=meta["name"],
                ids=ids,
                ngrams=arrays["ngrams"],
                ngram_items=arrays["ngram_items"],
                signatures=arrays["signatures"],
                numbers=_split(arrays["numbers"], arrays["numbers_offsets"]),
                formulas=_split(arrays["formulas"], arrays["formulas_offsets"]),
                meta=meta,
            )


_PROBE = "Probe: 3 trains leave at 4:15; $x^2 + 1,200 = y$. How many?"


def hashing_probe(ngram: int, num_perm: int, seed: int) -> dict[str, list[int]]:
    """Hashes of a fixed text: stored with the fingerprints and compared on load, so a change in the hashing
    code (without a ``TOKENIZER_VERSION`` bump) is an error instead of silently matching nothing."""
    toks = [decontam_tokens(_PROBE)]
    return {
        "signature": text_signatures(toks, num_perm, seed)[0][:8].tolist(),
        "ngrams": ngram_hashes(toks, min(ngram, len(toks[0])))[0][:4].tolist(),
    }


def _split(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def text_signatures(token_lists: Sequence[list[str]], num_perm: int, seed: int) -> np.ndarray:
    hashes, starts = shingle_hashes(token_lists)
    return minhash_from_shingles(hashes, starts, num_perm, seed)


def boilerplate_ngrams(reference_texts: Sequence[str], ngram: int, min_texts: int = 2) -> np.ndarray:
    """Sorted n-gram hashes found in at least ``min_texts`` distinct reference texts."""
    if not reference_texts:
        return np.empty(0, dtype=np.uint64)
    hashes, owner = ngram_hashes([decontam_tokens(t) for t in reference_texts], ngram)
    pairs = np.unique(np.stack([hashes, owner.astype(np.uint64)], axis=1), axis=0)
    values, counts = np.unique(pairs[:, 0], return_counts=True)
    return values[counts >= min_texts]


def build_fingerprint(
    name: str,
    items: Sequence[tuple[str, str]],
    reference_texts: Sequence[str] = (),
    ngram: int = 13,
    num_perm: int = 128,
    seed: int = 1,
    meta: dict[str, Any] | None = None,
) -> Fingerprint:
    """Fingerprint ``items`` (``(id, question)`` pairs), leaving out n-grams common in ``reference_texts``."""
    ids = [item_id for item_id, _ in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{name}: benchmark item ids are not unique")
    token_lists = [decontam_tokens(text) for _, text in items]
    hashes, owner = ngram_hashes(token_lists, ngram)
    stop = boilerplate_ngrams(reference_texts, ngram)
    mask = ~np.isin(hashes, stop)
    hashes, owner = hashes[mask], owner[mask]
    order = np.lexsort((owner, hashes))
    hashes, owner = hashes[order], owner[order]
    fresh = np.ones(len(hashes), dtype=bool)
    fresh[1:] = (hashes[1:] != hashes[:-1]) | (owner[1:] != owner[:-1])
    info = {
        "name": name,
        "format_version": FORMAT_VERSION,
        "tokenizer_version": TOKENIZER_VERSION,
        "shingles": SHINGLES,
        "formulas": "unigrams + bigrams of $…$ / \\[…\\] tokens, numbers masked",
        "ngram": ngram,
        "num_perm": num_perm,
        "seed": seed,
        "hashing_probe": hashing_probe(ngram, num_perm, seed),
        "items": len(ids),
        "ngrams": int(fresh.sum()),
        "boilerplate_ngrams_removed": int((~mask).sum()),
        **(meta or {}),
    }
    return Fingerprint(
        name=name,
        ids=ids,
        ngrams=hashes[fresh],
        ngram_items=owner[fresh].astype(np.uint32),
        signatures=text_signatures(token_lists, num_perm, seed),
        numbers=number_hashes(token_lists),
        formulas=formula_shingles([text for _, text in items]),
        meta=info,
    )


class Decontaminator:
    """Checks texts against benchmark fingerprints; ``check`` returns the matched item id or None per text."""

    def __init__(
        self,
        benchmarks: Sequence[str] = DEFAULT_BENCHMARKS,
        ngram: int = 13,
        threshold: float = DECONTAM_THRESHOLD,
        fingerprints_dir: Path | None = None,
        fingerprints: Sequence[Fingerprint] | None = None,
    ) -> None:
        if isinstance(benchmarks, str):
            benchmarks = (benchmarks,)
        base = Path(fingerprints_dir) if fingerprints_dir else FINGERPRINTS_DIR
        loaded = (
            list(fingerprints)
            if fingerprints is not None
            else [Fingerprint.load(base / b) for b in benchmarks]
        )
        if not loaded:
            raise ValueError("no benchmarks to check against")
        first = loaded[0].meta
        self.num_perm, self.seed = int(first["num_perm"]), int(first["seed"])
        for fp in loaded:
            if (
                fp.meta.get("tokenizer_version") != TOKENIZER_VERSION
                or fp.meta.get("format_version") != FORMAT_VERSION
            ):
                raise ValueError(
                    f"fingerprints for {fp.name} were built with another tokenizer or format; "
                    "rebuild them with scripts/build_fingerprints.py"
                )
            if int(fp.meta["ngram"]) != ngram:
                raise ValueError(
                    f"fingerprints for {fp.name} hold {fp.meta['ngram']}-grams, not {ngram}-grams; "
                    f"rebuild them with scripts/build_fingerprints.py --ngram {ngram}"
                )
            if (int(fp.meta["num_perm"]), int(fp.meta["seed"])) != (self.num_perm, self.seed):
                raise ValueError("all fingerprints must share num_perm and seed")
            if fp.meta.get("hashing_probe") != hashing_probe(ngram, self.num_perm, self.seed):
                raise ValueError(
                    f"fingerprints for {fp.name} were hashed differently from this version of mathaug; "
                    "rebuild them with scripts/build_fingerprints.py"
                )
        self.ngram = ngram
        self.threshold = threshold
        self.ids = [f"{fp.name}:{item}" for fp in loaded for item in fp.ids]
        base_index = np.cumsum([0] + [len(fp.ids) for fp in loaded])[:-1]
        hashes = np.concatenate([fp.ngrams for fp in loaded])
        items = np.concatenate([fp.ngram_items.astype(np.int64) + off for fp, off in zip(loaded, base_index)])
        order = np.argsort(hashes, kind="stable")
        self._ngrams, self._ngram_items = hashes[order], items[order]
        self._signatures = np.concatenate([fp.signatures for fp in loaded])
        self._numbers = [arr for fp in loaded for arr in fp.numbers]
        self._formulas = [arr for fp in loaded for arr in fp.formulas]
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        bands, rows = lsh_params(threshold, self.num_perm)
        if bands < 2:  # datasketch needs two bands; near 1.0 any split finds the (almost) identical rows
            bands, rows = 2, self.num_perm // 2
        self._lsh = MinHashLSH(num_perm=self.num_perm, params=(bands, rows))
        with self._lsh.insertion_session() as session:
            for i, sig in enumerate(self._signatures):
                session.insert(i, to_lean_minhash(sig, self.seed), check_duplication=False)

    def check(self, texts: Sequence[str]) -> list[str | None]:
        token_lists = [decontam_tokens(t) for t in texts]
        found: list[int | None] = [None] * len(texts)
        hashes, owner = ngram_hashes(token_lists, self.ngram)
        if len(hashes) and len(self._ngrams):
            pos = np.searchsorted(self._ngrams, hashes)
            pos_clipped = np.minimum(pos, len(self._ngrams) - 1)
            hit = self._ngrams[pos_clipped] == hashes
            for text_i, item in zip(owner[hit].tolist(), self._ngram_items[pos_clipped[hit]].tolist()):
                if found[text_i] is None or item < found[text_i]:
                    found[text_i] = item
        sigs = text_signatures(token_lists, self.num_perm, self.seed)
        need = int(np.ceil(self.threshold * self.num_perm - 1e-9))
        numbers: list[np.ndarray] | None = None
        formulas: list[np.ndarray] | None = None
        for i, sig in enumerate(sigs):
            if found[i] is not None:
                continue
            candidates = self._lsh.query(to_lean_minhash(sig, self.seed))
            if not candidates:
                continue
            cand = np.array(sorted(candidates))
            equal = (self._signatures[cand] == sig).sum(axis=1)
            close = cand[equal >= need][np.argsort(-equal[equal >= need], kind="stable")]
            if not len(close):
                continue
            if numbers is None:  # computed only for batches that have a near candidate
                numbers = number_hashes(token_lists)
                formulas = formula_shingles(texts)
            for item in close.tolist():
                if number_changes(numbers[i], self._numbers[item]) > MAX_NUMBER_CHANGES:
                    continue
                reference = self._formulas[item]
                if len(reference) and set_jaccard(formulas[i], reference) < MIN_MATH_SIMILARITY:  # type: ignore[index]
                    continue
                found[i] = item
                break
        return [None if f is None else self.ids[f] for f in found]


@lru_cache(maxsize=4)
def _cached(benchmarks: tuple[str, ...], ngram: int) -> Decontaminator:
    return Decontaminator(benchmarks, ngram=ngram)


def contaminated(
    texts: Sequence[str], benchmarks: Sequence[str] = DEFAULT_BENCHMARKS, ngram: int = 13
) -> list[str | None]:
    """For each text, the id (``<benchmark>:<item>``) of the benchmark item it overlaps, else None."""
    if isinstance(benchmarks, str):
        benchmarks = (benchmarks,)
    return _cached(tuple(benchmarks), ngram).check(list(texts))
