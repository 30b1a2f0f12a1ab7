"""One streaming pass over an output directory's shards that collects every figure the report draws.

Why columns and not records: a report of a million-row build must finish in under a minute in bounded memory,
and turning rows into Python dicts costs more than the rest together. The pass reads only the columns it needs,
batch by batch (``iter_batches``), and folds each batch into fixed-size counters: a token-count histogram per
method (not the lengths themselves), ``Counter``s of (method, label) pairs, and ten sample positions per method.
Memory is then set by the batch size and the number of distinct labels, never by the row count.

Solution length is counted in cheap tokens: words (runs of letters, digits, ``_`` or non-ASCII bytes) and single
punctuation or symbol characters, i.e. the regex ``\\w+|[^\\w\\s]``, computed on the column's UTF-8 bytes with
numpy (``count_tokens``; about 3x faster than Arrow's RE2 running the same regex). A LaTeX command splits into
``\\`` + name, roughly as a BPE tokenizer does; no model download, no per-row Python call.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.io.dropped import DROPPED_SUBDIR
from pipeline.io.shards import read_manifest, shard_paths
from pipeline.report.answers import ANSWER_TYPES, classify_answers

MAX_TOKENS = 4096  # longer solutions are counted in the last histogram bin
SAMPLES_PER_METHOD = 10
BATCH_ROWS = 16_384
SAMPLE_COLUMNS = ["id", "method", "question", "solution", "answer", "verification", "difficulty", "persona",
                  "source", "parent_ids"]
_ROUND_IN_PARAMS = r'"round":\s*(?P<round>\d+)'


class ReportError(Exception):
    """The directory is not a mathaug output (no manifest, no shards, or shards without the schema)."""


@dataclass
class BuildScan:
    """Everything the report shows about one output directory, in counters whose size does not grow with rows."""

    out_dir: Path
    manifest: dict[str, Any]
    rows: int = 0
    kept: Counter[str] = field(default_factory=Counter)
    by_verification: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, verification method)
    by_status: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, verification status)
    token_hist: dict[str, np.ndarray] = field(default_factory=dict)  # method -> counts of 0..MAX_TOKENS tokens
    difficulty: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, difficulty label)
    agreement: Counter[tuple[str, int, int]] = field(default_factory=Counter)  # (method, votes, samples)
    answer_types: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, answer type)
    cluster_sizes: Counter[int] = field(default_factory=Counter)  # rows in a kept row's cluster -> kept rows
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (dropped_by, method)
    rounds: Counter[tuple[int, str]] = field(default_factory=Counter)  # (round, method) -> kept rows
    round_tokens: Counter[tuple[int, str]] = field(default_factory=Counter)  # (round, method) -> solution tokens
    round_source: str | None = None  # where the round came from: "round", "source.round" or "method_params"
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def funnel(self) -> dict[str, dict[str, float]]:
        return self.manifest.get("funnel") or {}

    @property
    def methods(self) -> list[str]:
        """Methods in the order the build ran them (seed first), then any others the rows carry."""
        order = [m for m in self.funnel if m in self.kept or m in self.manifest.get("methods", [])]
        return order + sorted(m for m in self.kept if m not in order)

    def token_quantile(self, method: str, q: float) -> float:
        hist = self.token_hist.get(method)
        if hist is None or not hist.sum():
            return 0.0
        cumulative = np.cumsum(hist)
        return float(np.searchsorted(cumulative, q * cumulative[-1]))

    def token_mean(self, method: str) -> float:
        hist = self.token_hist.get(method)
        if hist is None or not hist.sum():
            return 0.0
        return float((hist * np.arange(len(hist))).sum() / hist.sum())


def _count_by(columns: dict[str, pa.Array], mask: pa.Array | None = None) -> Iterator[tuple[tuple[Any, ...], int]]:
    """(key values, rows) for each distinct combination of ``columns`` (Arrow's hash group-by, nulls included)."""
    table = pa.table(columns)
    if mask is not None:
        table = table.filter(mask)
    if not table.num_rows:
        return
    names = list(columns)
    grouped = table.group_by(names).aggregate([(names[0], "count", pc.CountOptions(mode="all"))])
    counts = grouped.column(f"{names[0]}_count").to_pylist()
    keys = zip(*(grouped.column(name).to_pylist() for name in names))
    yield from zip(keys, counts)


# byte class: 0 space, 1 word (letters, digits, "_", any non-ASCII byte), 2 punctuation or symbol
_BYTE_CLASS = np.full(256, 2, dtype=np.uint8)
_BYTE_CLASS[[9, 10, 11, 12, 13, 32]] = 0
_BYTE_CLASS[[*range(ord("0"), ord("9") + 1), *range(ord("A"), ord("Z") + 1), *range(ord("a"), ord("z") + 1),
             ord("_"), *range(0x80, 0x100)]] = 1


def count_tokens(texts: pa.Array) -> np.ndarray:
    """Tokens per string (``\\w+|[^\\w\\s]`` over ASCII; non-ASCII bytes count as word characters); 0 for null."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], type=pa.string())
    if not pa.types.is_string(texts.type):
        texts = pc.cast(texts, pa.string())
    counts = np.zeros(len(texts), dtype=np.int64)
    if not len(texts) or texts.null_count == len(texts):
        return counts
    buffers = texts.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[texts.offset : texts.offset + len(texts) + 1].astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    if not len(data):
        return counts
    cls = _BYTE_CLASS[data]
    word = cls == 1
    token_start = cls == 2  # every punctuation byte is a token, and so is the first byte of each word:
    token_start[0] |= word[0]
    token_start[1:] |= word[1:] & ~word[:-1]
    starts = offsets[:-1] - offsets[0]
    nonempty = offsets[1:] > offsets[:-1]
    firsts = starts[nonempty]
    token_start[firsts] = cls[firsts] != 0  # a row's first byte starts a token whatever the row before ended with
    counts[nonempty] = np.add.reduceat(token_start, firsts, dtype=np.int64)
    if texts.null_count:
        counts[texts.is_null().to_numpy(zero_copy_only=False)] = 0
    return counts


def _round_sources(schema: pa.Schema) -> list[str]:
    """Where rows may carry their round, in order of trust: a top-level ``round`` column, ``source.round``, or a
    ``round`` key in the ``method_params`` JSON (stages that predate the column)."""
    sources = []
    if "round" in schema.names:
        sources.append("round")
    if "source" in schema.names and pa.types.is_struct(schema.field("source").type):
        if schema.field("source").type.get_field_index("round") >= 0:
            sources.append("source.round")
    if "method_params" in schema.names:
        sources.append("method_params")
    return sources


def _rounds(batch: pa.RecordBatch, source: str) -> pa.Array:
    if source == "round":
        return pc.cast(batch.column("round"), pa.int64())
    if source == "source.round":
        return pc.cast(pc.struct_field(batch.column("source"), "round"), pa.int64())
    extracted = pc.extract_regex(pc.fill_null(batch.column("method_params"), ""), pattern=_ROUND_IN_PARAMS)
    return pc.cast(pc.struct_field(extracted, "round"), pa.int64())


def _struct_field(batch: pa.RecordBatch, column: str, name: str, default: pa.DataType) -> pa.Array:
    if column not in batch.schema.names or batch.schema.field(column).type.get_field_index(name) < 0:
        return pa.nulls(batch.num_rows, type=default)
    return pc.struct_field(batch.column(column), name)


class _SamplePicker:
    """Ten uniformly random rows per method, chosen by random key while streaming (a bounded heap per method)."""

    def __init__(self, per_method: int, seed: int) -> None:
        self.per_method = per_method
        self.rng = np.random.default_rng(seed)
        self.best: dict[str, list[tuple[float, int, int]]] = {}  # method -> max-heap of (-key, file, row)

    def offer(self, codes: np.ndarray, names: list[str], file_index: int, first_row: int) -> None:
        """Consider the rows of one batch: ``codes`` index ``names`` (the batch's dictionary-encoded methods)."""
        if self.per_method < 1:
            return
        keys = self.rng.random(len(codes))
        for code, method in enumerate(names):
            positions = np.flatnonzero(codes == code)
            if len(positions) > self.per_method:
                positions = positions[np.argpartition(keys[positions], self.per_method)[: self.per_method]]
            heap = self.best.setdefault(method, [])
            for pos in positions:
                item = (-float(keys[pos]), file_index, first_row + int(pos))
                if len(heap) < self.per_method:
                    heapq.heappush(heap, item)
                elif item > heap[0]:
                    heapq.heapreplace(heap, item)

    def read(self, files: list[Path]) -> dict[str, list[dict[str, Any]]]:
        """The chosen rows, reading only the row groups that hold one (and only the columns shown)."""
        wanted: dict[int, list[tuple[int, str]]] = {}
        for method, heap in self.best.items():
            for _, file_index, row in heap:
                wanted.setdefault(file_index, []).append((row, method))
        samples: dict[str, list[dict[str, Any]]] = {method: [] for method in self.best}
        for file_index, rows in sorted(wanted.items()):
            parquet = pq.ParquetFile(files[file_index])
            columns = [c for c in SAMPLE_COLUMNS if c in parquet.schema_arrow.names]
            starts = np.cumsum([0] + [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)])
            for group in sorted({int(np.searchsorted(starts, row, side="right")) - 1 for row, _ in rows}):
                table = parquet.read_row_group(group, columns=columns)
                for row, method in rows:
                    if starts[group] <= row < starts[group + 1]:
                        samples[method].append(table.slice(row - int(starts[group]), 1).to_pylist()[0])
        for method in samples:
            samples[method].sort(key=lambda rec: rec["id"])
        return samples


def _add_histograms(scan: BuildScan, codes: np.ndarray, names: list[str], tokens: np.ndarray) -> None:
    """One bincount for all methods of the batch: bin ``code * (MAX_TOKENS + 1) + min(tokens, MAX_TOKENS)``."""
    width = MAX_TOKENS + 1
    counts = np.bincount(codes.astype(np.int64) * width + np.minimum(tokens, MAX_TOKENS), minlength=len(names) * width)
    for code, method in enumerate(names):
        hist = scan.token_hist.setdefault(method, np.zeros(width, dtype=np.int64))
        hist += counts[code * width : (code + 1) * width]


def _fold_batch(scan: BuildScan, batch: pa.RecordBatch, round_sources: list[str]) -> tuple[np.ndarray, list[str]]:
    """Add one batch to the counters; returns its method codes and their names (for the sample picker)."""
    method = batch.column("method")
    encoded = pc.dictionary_encode(method)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    names = encoded.dictionary.to_pylist()
    tokens_np = count_tokens(batch.column("solution"))
    _add_histograms(scan, codes, names, tokens_np)
    for (m,), n in _count_by({"method": method}):
        scan.kept[m] += n
    vmethod = _struct_field(batch, "verification", "method", pa.string())
    status = _struct_field(batch, "verification", "status", pa.string())
    for (m, v), n in _count_by({"method": method, "v": vmethod}):
        scan.by_verification[(m, v or "none")] += n
    for (m, s), n in _count_by({"method": method, "s": status}):
        scan.by_status[(m, s or "none")] += n
    if "difficulty" in batch.schema.names:
        difficulty = batch.column("difficulty")
        for (m, d), n in _count_by({"method": method, "d": difficulty}, pc.is_valid(difficulty)):
            scan.difficulty[(m, d)] += n
    votes = _struct_field(batch, "verification", "votes", pa.int32())
    samples = _struct_field(batch, "verification", "samples", pa.int32())
    voted = pc.fill_null(pc.greater(samples, 1), False)
    for (m, v, s), n in _count_by({"method": method, "v": votes, "s": samples}, voted):
        scan.agreement[(m, int(v or 0), int(s))] += n
    types = pa.array(np.asarray(ANSWER_TYPES)[classify_answers(batch.column("answer"))])
    for (m, t), n in _count_by({"method": method, "t": types}):
        scan.answer_types[(m, t)] += n
    dropped = _struct_field(batch, "dedup", "dropped", pa.int32())
    sizes = pc.fill_null(dropped, 0).to_numpy(zero_copy_only=False).astype(np.int64) + 1
    for size, n in zip(*np.unique(sizes, return_counts=True)):
        scan.cluster_sizes[int(size)] += int(n)
    rounds = pa.nulls(batch.num_rows, type=pa.int64())
    for source in round_sources:  # the first source that has a row's round wins
        if rounds.null_count:
            found = _rounds(batch, source)
            if found.null_count < len(found) and scan.round_source is None:
                scan.round_source = source
            rounds = pc.coalesce(rounds, found)
    if rounds.null_count < len(rounds):
        table = pa.table({"r": rounds, "m": method, "t": pa.array(tokens_np)}).filter(pc.is_valid(rounds))
        for group in table.group_by(["r", "m"]).aggregate([("t", "sum"), ("t", "count")]).to_pylist():
            scan.rounds[(int(group["r"]), group["m"])] += group["t_count"]
            scan.round_tokens[(int(group["r"]), group["m"])] += group["t_sum"]
    return codes, names


def _scan_dropped(scan: BuildScan) -> None:
    listed = (scan.manifest.get("dropped") or {}).get("files")
    files = [scan.out_dir / f for f in listed] if listed else sorted((scan.out_dir / DROPPED_SUBDIR).glob("*.parquet"))
    for path in files:
        if not path.exists():
            continue
        parquet = pq.ParquetFile(path)
        if not {"dropped_by", "method"} <= set(parquet.schema_arrow.names):
            continue
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=["dropped_by", "method"]):
            for (step, m), n in _count_by({"s": batch.column("dropped_by"), "m": batch.column("method")}):
                scan.dropped[(step or "unknown", m)] += n


def load_manifest(out_dir: Path) -> dict[str, Any]:
    """The manifest of a mathaug output directory, or ``ReportError`` saying why ``out_dir`` is not one."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ReportError(f"{out_dir}: no such directory")
    try:
        manifest = read_manifest(out_dir)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{out_dir / 'manifest.json'}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or "shards" not in manifest:
        raise ReportError(f"{out_dir}: no mathaug manifest.json (not a mathaug output directory)")
    return manifest


def scan_build(out_dir: Path, *, samples_per_method: int = SAMPLES_PER_METHOD, seed: int = 0) -> BuildScan:
    """Stream the shards of ``out_dir`` once (the needed columns only) and return its figures."""
    out_dir = Path(out_dir)
    scan = BuildScan(out_dir, load_manifest(out_dir))
    files = shard_paths(out_dir)
    picker = _SamplePicker(samples_per_method, seed)
    for file_index, path in enumerate(files):
        try:
            parquet = pq.ParquetFile(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise ReportError(f"{path}: not a readable Parquet shard ({exc})") from None
        schema = parquet.schema_arrow
        missing = {"method", "solution", "answer"} - set(schema.names)
        if missing:
            raise ReportError(f"{path}: not a mathaug shard (no {', '.join(sorted(missing))} column)")
        round_sources = _round_sources(schema)
        columns = [c for c in ("method", "solution", "answer", "difficulty", "verification", "dedup") if c in schema.names]
        columns += [source.split(".")[0] for source in round_sources]
        first_row = 0
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=sorted(set(columns))):
            codes, names = _fold_batch(scan, batch, round_sources)
            picker.offer(codes, names, file_index, first_row)
            first_row += batch.num_rows
            scan.rows += batch.num_rows
    _scan_dropped(scan)
    try:
        scan.samples = picker.read(files)
    except OSError as exc:  # a build published a new generation (and removed these shards) while we read
        raise ReportError(f"{out_dir}: the shards changed while the report read them ({exc}); run it again") from None
    return scan
