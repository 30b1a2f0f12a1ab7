"""Per-stage counters: the funnel table the CLI prints, the manifest stores and the Prefect UI shows.

One ``Funnel`` per build. Keys are free-form but these are the ones every report knows, in display order:
``in`` (rows a stage read), ``generated`` (rows it made), ``rejected`` (candidates it threw away; the reasons go
under ``rejected:<reason>``), ``verified``, ``failed`` (failed verification), ``duplicates``, ``contaminated``,
``kept`` (rows in the final shards), ``seconds`` (stage wall time), and model accounting: ``requests``,
``cache_hits``, ``tokens_in``, ``tokens_out``, ``llm_seconds`` (time spent waiting on models) and the derived
``tokens_per_s`` (``tokens_out / llm_seconds``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

COLUMNS = (
    "in",
    "generated",
    "rejected",
    "verified",
    "failed",
    "duplicates",
    "contaminated",
    "kept",
    "requests",
    "cache_hits",
    "tokens_in",
    "tokens_out",
    "tokens_per_s",
    "seconds",
)


class Funnel:
    """Nested counters ``stage -> key -> number``; merge-able, JSON-serialisable."""

    def __init__(self, data: dict[str, dict[str, float]] | None = None) -> None:
        self._data: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        if data:
            self.merge(data)

    def add(self, stage: str, key: str, n: float = 1) -> None:
        self._data[stage][key] += n

    def reject(self, stage: str, reason: str, n: int = 1) -> None:
        """Count a thrown-away candidate under ``rejected`` and ``rejected:<reason>``."""
        self.add(stage, "rejected", n)
        self.add(stage, f"rejected:{reason}", n)

    def get(self, stage: str, key: str) -> float:
        return self._data.get(stage, {}).get(key, 0)

    def merge(self, other: Funnel | dict[str, dict[str, float]]) -> None:
        data = other.to_dict() if isinstance(other, Funnel) else other
        for stage, counts in data.items():
            for key, n in counts.items():
                self._data[stage][key] += n

    def stages(self) -> list[str]:
        return list(self._data)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for stage, counts in self._data.items():
            out[stage] = {k: (int(v) if float(v).is_integer() else round(v, 3)) for k, v in counts.items()}
        return out

    def reasons(self, stage: str) -> dict[str, int]:
        return {
            k.split(":", 1)[1]: int(v) for k, v in self._data.get(stage, {}).items() if k.startswith("rejected:")
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per stage with every display column (0 where nothing was counted), plus a total row."""
        table = []
        total: dict[str, float] = defaultdict(float)
        for stage in self._data:
            row: dict[str, Any] = {"stage": stage}
            for col in COLUMNS:
                value = self.get(stage, col)
                row[col] = int(value) if float(value).is_integer() else round(value, 2)
                if col != "in":
                    total[col] += value
            table.append(row)
            row["tokens_per_s"] = self._rate(self.get(stage, "tokens_out"), self.get(stage, "llm_seconds"))
        if table:
            total_row: dict[str, Any] = {"stage": "total"}
            for col in COLUMNS:
                value = total.get(col, 0) if col != "in" else self.get(table[0]["stage"], "in")
                total_row[col] = int(value) if float(value).is_integer() else round(value, 2)
            total_row["tokens_per_s"] = self._rate(
                total.get("tokens_out", 0), sum(self.get(stage, "llm_seconds") for stage in self._data)
            )
            table.append(total_row)
        return table

    @staticmethod
    def _rate(tokens: float, seconds: float) -> float:
        return round(tokens / seconds, 1) if seconds else 0
