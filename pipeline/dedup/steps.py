"""Pipeline steps over record streams: exact dedup, near dedup, decontamination.

Exact and near dedup read their input twice: pass 1 parks the records on disk and collects small per-row
columns (keys, signatures, keep-rule fields); pass 2 emits the keepers in input order. Their choice of keeper
therefore cannot depend on input order or batch boundaries. Decontamination needs no global view and streams.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq

from pipeline.dedup.clusters import cluster_labels
from pipeline.dedup.decontam import DECONTAM_THRESHOLD, DEFAULT_BENCHMARKS, Decontaminator
from pipeline.dedup.index import SignatureIndex
from pipeline.dedup.keep import (
    RankColumns,
    choose_keepers,
    choose_keepers_limited,
    keeper_positions,
    stage_rank_table,
)
from pipeline.dedup.spill import RecordSpill
from pipeline.dedup.text import exact_key, solution_key
from pipeline.funnel import Funnel

if TYPE_CHECKING:
    from pipeline.dedup.semantic import SemanticDecontaminator

Progress = Callable[[str, int], None]
# Told of each dropped row and the id of the row kept in its place (None: a row of earlier output, --against).
OnDuplicate = Callable[[dict[str, Any], str | None], None]
BATCH = 10_000


def _batched(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        for rec in batch:
            if not isinstance(rec, dict):
                raise TypeError(f"records must be dicts, got {type(rec).__name__}")
            if not isinstance(rec.get("question"), str):
                raise ValueError(f"record {rec.get('id')!r} has no question text")
            if rec.get("id") is None or not isinstance(rec.get("method"), str):
                raise ValueError(f"record without an id or method (question {rec['question'][:60]!r})")
        yield batch


def _method(record: dict[str, Any]) -> str:
    return record["method"]


def content_key(value: str) -> int:
    """A 63-bit content hash: orders rows inside an LSH bucket without looking at input position."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "little") >> 1


@contextmanager
def _work_dir(directory: Path | None, prefix: str) -> Iterator[Path]:
    if directory is not None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        yield Path(directory)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def exact_dedup(
    records: Iterable[dict[str, Any]],
    funnel: Funnel | None = None,
    stage_key: Callable[[dict[str, Any]], str] = _method,
    *,
    stage_order: Sequence[str] = (),
    work_dir: Path | None = None,
    batch_size: int = BATCH,
    progress: Progress | None = None,
    on_duplicate: OnDuplicate | None = None,
    max_solutions: int = 1,
    prefer: Sequence[str] = (),
    length_targets: dict[str, int] | None = None,
) -> Iterator[dict[str, Any]]:
    """Drop rows whose normalised question (case, spacing, punctuation folded; numbers kept) was seen.

    Keeps up to ``max_solutions`` rows per question, each with a distinct (normalised) solution, by the keep
    rule (``keep.py``, with the ``prefer`` preferences); ``stage_key`` names a row's stage, both for the rule's
    stage order and for the funnel count (``duplicates``) of each dropped row.
    """
    ranks = stage_rank_table(stage_order)
    with _work_dir(work_dir, "mathaug-exact-") as work:
        spill = RecordSpill(work / "exact-rows")
        cols = RankColumns(prefer=tuple(prefer), targets=length_targets)
        keys: list[np.ndarray] = []
        solution_keys: list[np.ndarray] = []
        for batch in _batched(records, batch_size):
            keys.append(
                np.array(
                    [int.from_bytes(exact_key(r["question"])[:8], "little") for r in batch], dtype=np.uint64
                )
            )
            solution_keys.append(
                np.array(
                    [int.from_bytes(solution_key(r.get("solution") or "")[:8], "little") for r in batch],
                    dtype=np.uint64,
                )
            )
            cols.add(batch, [stage_key(r) for r in batch], ranks)
            spill.write(batch)
            if progress:
                progress("reading", len(batch))
        all_keys = np.concatenate(keys) if keys else np.empty(0, dtype=np.uint64)
        labels = np.unique(all_keys, return_inverse=True)[1].astype(np.int64)
        arrays = cols.arrays()
        keepers = None
        if max_solutions == 1 and not prefer:
            keep, folded = choose_keepers(labels, *arrays)
        else:
            sol = np.concatenate(solution_keys) if solution_keys else np.empty(0, dtype=np.uint64)
            pairs = np.unique(np.stack([all_keys, sol], axis=1), axis=0, return_inverse=True)[1].reshape(-1)
            keep, folded, keepers = choose_keepers_limited(
                labels, pairs.astype(np.int64), *arrays, limit=max_solutions, whole_subgroups=False,
                preferences=cols.preference_arrays(),
            )
        try:
            yield from _emit_keepers(
                spill, labels, keep, folded, arrays[2], stage_key, funnel, on_duplicate, progress, batch_size,
                keepers,
            )
        finally:
            spill.remove()


def _emit_keepers(
    spill: RecordSpill,
    labels: np.ndarray,
    keep: np.ndarray,
    folded: np.ndarray,
    ids: np.ndarray,
    stage_key: Callable[[dict[str, Any]], str],
    funnel: Funnel | None,
    on_duplicate: OnDuplicate | None,
    progress: Progress | None,
    batch_size: int,
    keepers: np.ndarray | None = None,
) -> Iterator[dict[str, Any]]:
    """Pass 2 of exact and near dedup: the parked rows in input order, keepers stamped with what they absorbed;
    each dropped row counted under ``duplicates`` and told to ``on_duplicate`` with its keeper's id."""
    if keepers is None and on_duplicate is not None:
        keepers = keeper_positions(labels, keep)
    for i, rec in enumerate(spill):
        if keep[i]:
            rec["dedup"] = {"cluster_id": str(rec["id"]), "dropped": int(folded[i])}
            yield rec
        else:
            if funnel is not None:
                funnel.add(stage_key(rec), "duplicates", 1)
            if on_duplicate is not None and keepers is not None:
                j = int(keepers[i])
                on_duplicate(rec, None if j < 0 else ids[j].decode("utf-8"))
        if progress and (i + 1) % batch_size == 0:
            progress("writing", batch_size)


def _against_batches(against: Sequence[Path], batch_size: int) -> Iterator[list[str]]:
    """Question texts of earlier mathaug output directories (``DIR/data/*.parquet``)."""
    from pipeline.io.shards import shard_paths

    for directory in against:
        files = shard_paths(Path(directory))
        if not files:
            raise FileNotFoundError(
                f"--against {directory}: no Parquet shards found (expected DIR/data/*.parquet)"
            )
        for file in files:
            parquet = pq.ParquetFile(file)
            if "question" not in parquet.schema_arrow.names:
                raise ValueError(f"--against {file}: no 'question' column")
            for batch in parquet.iter_batches(batch_size=batch_size, columns=["question"]):
                yield [q or "" for q in batch.column(0).to_pylist()]


def near_dedup(
    records: Iterable[dict[str, Any]],
    threshold: float = 0.8,
    num_perm: int = 128,
    funnel: Funnel | None = None,
    index_dir: Path | None = None,
    against: Sequence[Path] = (),
    stage_order: Sequence[str] = (),
    *,
    seed: int = 1,
    workers: int | None = None,
    batch_size: int = BATCH,
    progress: Progress | None = None,
    on_duplicate: OnDuplicate | None = None,
    max_per_cluster: int = 1,
    prefer: Sequence[str] = (),
    keep_solutions: bool = False,
) -> Iterator[dict[str, Any]]:
    """Keep one row per near-duplicate cluster (estimated Jaccard ≥ ``threshold``, same numbers), or up to
    ``max_per_cluster`` distinct questions. With ``keep_solutions`` the rows of one (normalised) question move
    as one: every solution of a kept question stays (exact dedup already capped them per question).

    The kept row gets ``dedup = {cluster_id: its id, dropped: rows folded into it}``. ``index_dir`` keeps the
    signature index between runs (a rerun over the same input reuses it); ``against`` holds earlier output
    directories whose rows count as already kept.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    ranks = stage_rank_table(stage_order)
    with _work_dir(index_dir, "mathaug-near-") as work:
        index = SignatureIndex(work / "signatures", num_perm=num_perm, seed=seed, workers=workers)
        spill = RecordSpill(work / "rows")
        cols = RankColumns(prefer=tuple(prefer))
        tiebreak: list[np.ndarray] = []
        questions: list[np.ndarray] = []
        try:
            for batch in _batched(records, batch_size):
                index.add([r["question"] for r in batch])
                questions.append(
                    np.array([int.from_bytes(exact_key(r["question"])[:8], "little") for r in batch], dtype=np.uint64)
                )
                cols.add(batch, [r["method"] for r in batch], ranks)
                tiebreak.append(np.array([content_key(str(r["id"])) for r in batch], dtype=np.int64))
                spill.write(batch)
                if progress:
                    progress("hashing", len(batch))
            for texts in _against_batches(against, batch_size):
                index.add(texts, kind="against")
                tiebreak.append(np.array([content_key("against\x00" + t) for t in texts], dtype=np.int64))
                if progress:
                    progress("hashing against", len(texts))
            index.close()
        except BaseException:
            index.abort()
            spill.remove()
            raise
        try:
            sigs = index.signatures()
            order_keys = np.concatenate(tiebreak) if tiebreak else np.empty(0, dtype=np.int64)
            labels = cluster_labels(
                sigs,
                index.number_keys(),
                order_keys,
                threshold,
                on_stage=(lambda s: progress(s, 0)) if progress else None,
            )
            del sigs
            arrays = cols.arrays()
            anchors = index.rows_of("against")
            keepers = None
            question_keys = np.concatenate(questions) if questions else np.empty(0, dtype=np.uint64)
            if max_per_cluster == 1 and not prefer and not keep_solutions:
                keep, folded = choose_keepers(labels, *arrays, anchors=anchors)
            else:  # several solutions of one question move as one: their question is what clusters
                subgroups = (
                    np.unique(question_keys, return_inverse=True)[1].astype(np.int64)
                    if keep_solutions
                    else np.arange(len(question_keys), dtype=np.int64)
                )
                keep, folded, keepers = choose_keepers_limited(
                    labels, subgroups, *arrays, limit=max_per_cluster, whole_subgroups=True,
                    preferences=cols.preference_arrays(), anchors=anchors,
                )
            yield from _emit_keepers(
                spill, labels, keep, folded, arrays[2], _method, funnel, on_duplicate, progress, batch_size,
                keepers,
            )
        finally:
            spill.remove()


def decontaminate(
    records: Iterable[dict[str, Any]],
    benchmarks: Sequence[str] = DEFAULT_BENCHMARKS,
    ngram: int = 13,
    funnel: Funnel | None = None,
    *,
    threshold: float = DECONTAM_THRESHOLD,
    fingerprints_dir: Path | None = None,
    batch_size: int = 2_000,
    on_contaminated: Callable[[dict[str, Any], str], None] | None = None,
    progress: Progress | None = None,
    semantic: SemanticDecontaminator | None = None,
) -> Iterator[dict[str, Any]]:
    """Drop rows that overlap a benchmark item (see ``decontam.py``); counts ``contaminated`` per stage.

    With ``semantic`` (``semantic.py``), the rows the n-gram/MinHash tiers let through are also checked for
    paraphrases; ``on_contaminated`` then gets ``"<item> (semantic: cosine …, score …, n/m numbers shared)"``.
    The step closes ``semantic`` when it ends.
    """
    checker = Decontaminator(benchmarks, ngram=ngram, threshold=threshold, fingerprints_dir=fingerprints_dir)
    try:
        for batch in _batched(records, batch_size):
            hits: list[str | None] = list(checker.check([r["question"] for r in batch]))
            if semantic is not None:
                clean = [i for i, hit in enumerate(hits) if hit is None]
                found = semantic.check([batch[i]["question"] for i in clean], progress)
                for i, sem in zip(clean, found):
                    if sem is not None:
                        hits[i] = sem.detail()
            for rec, hit in zip(batch, hits):
                if hit is None:
                    yield rec
                    continue
                if funnel is not None:
                    funnel.add(rec["method"], "contaminated", 1)
                if on_contaminated is not None:
                    on_contaminated(rec, hit)
            if progress:
                progress("checking", len(batch))
    finally:
        if semantic is not None:
            semantic.close()
