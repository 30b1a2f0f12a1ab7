"""Parquet shards with a manifest: written atomically, read back as records.

Layout of an output directory::

    OUT/data/train-00000.parquet ...   the dataset (zstd Parquet, SCHEMA from pipeline.records)
    OUT/manifest.json                  shards, row counts, sha256, schema version, recipe hash, run id, funnel,
                                       and every file mathaug wrote there (``--fresh`` removes only those)
    OUT/README.md                      Hugging Face dataset card (pipeline.io.card)
    OUT/dropped/dropped-00000.parquet  rows the build removed, with the step and reason (pipeline.io.dropped)
    OUT/.mathaug/                      work files (resume state, caches, lock); ignored by dataset loaders

``OUT/data`` and ``OUT/dropped`` are symlinks to the folders of the live *generation* under
``OUT/.mathaug/generations/`` (``pipeline.io.publish``). A writer fills a new generation and switches the links
only when it closes, then writes the manifest: a reader sees the previous complete dataset or the new one, never a
part. Each file is written to a temporary name, fsynced and renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io.publish import Generation, fsync_dir
from pipeline.records import FIELDS, SCHEMA, SCHEMA_VERSION, make_record, to_table

DATA_SUBDIR = "data"
MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + fsync + rename (POSIX-atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_table(path: Path, table: pa.Table, compression: str = "zstd") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression=compression)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class ShardWriter:
    """Writes ``rows_per_shard``-row shards into a new generation; ``close()`` publishes them and the manifest.

    Use as a context manager. On an exception nothing is published: the previous dataset and manifest stay as
    they were and the half-written generation is deleted. ``finish()`` + ``publish()`` split ``close()`` for
    callers that write files beside the shards (the card, the dropped table) before the switch.
    """

    def __init__(
        self,
        out_dir: Path,
        rows_per_shard: int = 50_000,
        run_id: str = "",
        split: str = "train",
        compression: str = "zstd",
        manifest_extra: dict[str, Any] | None = None,
        generation: Generation | None = None,
    ) -> None:
        if rows_per_shard < 1:
            raise ValueError("rows_per_shard must be >= 1")
        self.out_dir = Path(out_dir)
        self.generation = generation or Generation(self.out_dir)
        self.data_dir = self.generation.folder(DATA_SUBDIR)
        self.rows_per_shard = rows_per_shard
        self.run_id = run_id
        self.split = split
        self.compression = compression
        self.manifest_extra = dict(manifest_extra or {})
        self.shards: list[dict[str, Any]] = []
        self._buffer: list[dict[str, Any]] = []
        self.rows_written = 0
        self.manifest: dict[str, Any] | None = None
        self.published = False

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            if not self.published:
                self.close()
        else:
            self.generation.discard()

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        for rec in records:
            self._buffer.append(rec)
            if len(self._buffer) >= self.rows_per_shard:
                self._flush()

    def _flush(self, final: bool = False) -> None:
        while self._buffer and (final or len(self._buffer) >= self.rows_per_shard):
            chunk, self._buffer = self._buffer[: self.rows_per_shard], self._buffer[self.rows_per_shard :]
            path = self.data_dir / f"{self.split}-{len(self.shards):05d}.parquet"
            atomic_write_table(path, to_table(chunk), compression=self.compression)
            self.shards.append(
                {
                    "path": f"{DATA_SUBDIR}/{path.name}",
                    "rows": len(chunk),
                    "sha256": sha256_file(path),
                    "bytes": path.stat().st_size,
                }
            )
            self.rows_written += len(chunk)

    def finish(self, **manifest_extra: Any) -> dict[str, Any]:
        """Write the last shard; the manifest as it will be published (callers may add to it)."""
        self.manifest_extra.update(manifest_extra)
        self._flush(final=True)
        self.manifest = {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "complete": True,
            "split": self.split,
            "rows": self.rows_written,
            "shards": self.shards,
            **self.manifest_extra,
        }
        return self.manifest

    def publish(self) -> dict[str, Any]:
        """Switch ``OUT/data`` (and ``OUT/dropped``) to the new generation, then write the manifest."""
        manifest = self.manifest if self.manifest is not None else self.finish()
        self.generation.publish(owned=owned_files(read_manifest(self.out_dir)))
        manifest["written_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        atomic_write_bytes(self.out_dir / MANIFEST, json.dumps(manifest, indent=2, default=str).encode())
        self.published = True
        return manifest

    def close(self, **manifest_extra: Any) -> dict[str, Any]:
        self.finish(**manifest_extra)
        return self.publish()


def owned_files(manifest: dict[str, Any] | None) -> list[str]:
    """Paths (relative to OUT) a manifest says mathaug wrote: shards, dropped-table files, the card."""
    if not manifest:
        return []
    files = [s["path"] for s in manifest.get("shards", [])]
    files += list((manifest.get("dropped") or {}).get("files", []))
    card = manifest.get("card")
    if isinstance(card, dict) and card.get("path"):
        files.append(card["path"])
    return files


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    path = Path(out_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def shard_paths(path: Path) -> list[Path]:
    """The Parquet files of a mathaug output directory (manifest order), or of any folder of Parquet files."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest and manifest.get("shards"):
        return [path / s["path"] for s in manifest["shards"]]
    if (path / DATA_SUBDIR).is_dir():
        path = path / DATA_SUBDIR
    return sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))


def normalize_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row from outside (JSONL or foreign Parquet) → a schema record; mathaug rows pass through."""
    if "question" not in row or not row["question"]:
        raise ValueError("row has no 'question'")
    if "id" in row and "method" in row:
        return {name: row.get(name) for name in FIELDS}
    return make_record(
        question=row["question"],
        solution=row.get("solution"),
        answer=None if row.get("answer") is None else str(row["answer"]),
        method=row.get("method") or "external",
    )


def read_records(path: Path, batch_size: int = 10_000) -> Iterator[dict[str, Any]]:
    """Records from a shard directory, a Parquet file, or a JSONL file (errors name the line)."""
    path = Path(path)
    if path.is_dir() or path.suffix == ".parquet":
        files = shard_paths(path) if path.is_dir() else [path]
        if not files:
            raise FileNotFoundError(f"{path}: no Parquet shards found")
        for file in files:
            for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_size):
                for row in batch.to_pylist():
                    yield normalize_record(row)
        return
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield normalize_record(json.loads(line))
            except (json.JSONDecodeError, ValueError) as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None


def schema_matches(path: Path) -> bool:
    return pq.read_schema(path).remove_metadata().equals(SCHEMA.remove_metadata())
