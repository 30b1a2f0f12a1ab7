"""The dropped-rows table: every row the build made and then threw away, with the step and the reason.

``OUT/dropped/dropped-NNNNN.parquet`` holds the full record (the dataset's schema) plus ``dropped_by`` (verify,
exact_dedup, near_dedup, decontaminate), ``drop_detail`` (what failed, or the benchmark item that overlaps) and
``duplicate_of`` (the id of the row kept in its place; empty when that is a row of earlier ``--against`` output).
It answers "where did my rows go?" row by row, where the funnel only counts. Like the dataset, it is rewritten
whole by every (resumed) build into the build's new generation and published with the dataset in one switch
(``pipeline.io.publish``), and sits outside ``OUT/data`` so dataset loaders never mix it in:
``datasets.load_dataset("parquet", data_dir="OUT/dropped")``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.io.publish import Generation
from pipeline.io.shards import atomic_write_table
from pipeline.records import to_table

DROPPED_SUBDIR = "dropped"
DROP_COLUMNS = ("dropped_by", "drop_detail", "duplicate_of")


class DroppedWriter:
    """Buffers dropped rows and writes them in Parquet files of ``rows_per_file`` rows."""

    def __init__(
        self, out_dir: Path, rows_per_file: int = 50_000, compression: str = "zstd", generation: Generation | None = None
    ) -> None:
        """``generation``: the build's new generation; the table is published with the dataset (pipeline.io.publish)."""
        self.out_dir = Path(out_dir)
        self.generation = generation or Generation(self.out_dir)
        self.dir = self.generation.root / DROPPED_SUBDIR
        self.rows_per_file = rows_per_file
        self.compression = compression
        self.files: list[str] = []
        self.by_step: Counter[str] = Counter()
        self._buffer: list[tuple[dict[str, Any], str, str | None, str | None]] = []

    def add(self, record: dict[str, Any], step: str, detail: str | None = None, duplicate_of: str | None = None) -> None:
        self._buffer.append((dict(record), step, detail, duplicate_of))
        self.by_step[step] += 1
        if len(self._buffer) >= self.rows_per_file:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        chunk, self._buffer = self._buffer, []
        table = to_table([rec for rec, *_ in chunk])
        for i, name in enumerate(DROP_COLUMNS, start=1):
            table = table.append_column(name, pa.array([row[i] for row in chunk], type=pa.string()))
        path = self.dir / f"dropped-{len(self.files):05d}.parquet"
        atomic_write_table(path, table, compression=self.compression)
        self.files.append(f"{DROPPED_SUBDIR}/{path.name}")

    def close(self) -> dict[str, Any]:
        """Write what is buffered; the summary for the manifest."""
        self._flush()
        return {"rows": sum(self.by_step.values()), "by_step": dict(self.by_step), "files": self.files}


def describe_dropped(manifest: dict[str, Any]) -> str | None:
    """``417 rows (near_dedup 417)`` from a manifest, or None when the build kept no dropped-rows table."""
    drops = manifest.get("dropped")
    if not drops:
        return None
    steps = ", ".join(f"{step} {n:,}" for step, n in sorted(drops["by_step"].items(), key=lambda kv: -kv[1]))
    return f"{drops['rows']:,} rows" + (f" ({steps})" if steps else "")
