"""Records parked on disk between the two passes of a dedup step (memory bounded by one batch, not the data)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class RecordSpill:
    """Append-only batches of records as pickle files ``rows-NNNNNN.pkl`` in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        for old in self.directory.glob("rows-*.pkl"):
            old.unlink()
        self.batches = 0
        self.rows = 0

    def write(self, records: list[dict[str, Any]]) -> None:
        path = self.directory / f"rows-{self.batches:06d}.pkl"
        with path.open("wb") as fh:
            pickle.dump(records, fh, protocol=pickle.HIGHEST_PROTOCOL)
        self.batches += 1
        self.rows += len(records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(self.batches):
            path = self.directory / f"rows-{i:06d}.pkl"
            with path.open("rb") as fh:
                batch = pickle.load(fh)
            yield from batch

    def remove(self) -> None:
        for i in range(self.batches):
            (self.directory / f"rows-{i:06d}.pkl").unlink(missing_ok=True)
