"""Numbers derived from the funnel and a scan: the shared source of the plots, the text summary, the Prefect
markdown and ``mathaug report A B``, so the four never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.report.scan import BuildScan

# a row's fate after it was made, in the order the build decides it
FATES = ("failed", "duplicates", "contaminated")


def _num(counts: dict[str, Any], key: str) -> float:
    return float(counts.get(key, 0) or 0)


@dataclass(frozen=True)
class StageFigures:
    """One stage of the funnel: what it made and what became of it."""

    stage: str
    candidates: int  # generated + rejected while generating
    rejected: dict[str, int]  # reason -> candidates thrown away
    generated: int
    verified: int
    failed: int
    duplicates: int
    contaminated: int
    kept: int
    tokens: int
    seconds: float

    @property
    def yield_(self) -> float:
        """Kept rows per row made (0 when the stage made nothing)."""
        return self.kept / self.generated if self.generated else 0.0

    @property
    def tokens_per_kept(self) -> float | None:
        return self.tokens / self.kept if self.kept else None

    @property
    def seconds_per_kept(self) -> float | None:
        return self.seconds / self.kept if self.kept else None

    @property
    def not_written(self) -> int:
        """Rows made that are neither dropped nor kept (seeds with ``include_seeds: false``, ``keep_failed``)."""
        return max(0, self.generated - self.failed - self.duplicates - self.contaminated - self.kept)


def stage_figures(funnel: dict[str, dict[str, Any]]) -> list[StageFigures]:
    stages = []
    for stage, counts in funnel.items():
        rejected = {k.split(":", 1)[1]: int(v) for k, v in counts.items() if k.startswith("rejected:")}
        unexplained = int(_num(counts, "rejected")) - sum(rejected.values())
        if unexplained > 0:
            rejected["unspecified"] = unexplained
        generated = int(_num(counts, "generated"))
        stages.append(
            StageFigures(
                stage=stage,
                candidates=generated + sum(rejected.values()),
                rejected=rejected,
                generated=generated,
                verified=int(_num(counts, "verified")),
                failed=int(_num(counts, "failed")),
                duplicates=int(_num(counts, "duplicates")),
                contaminated=int(_num(counts, "contaminated")),
                kept=int(_num(counts, "kept")),
                tokens=int(_num(counts, "tokens_in") + _num(counts, "tokens_out")),
                seconds=_num(counts, "seconds"),
            )
        )
    return stages


def entity_swap_survival(funnel: dict[str, dict[str, Any]]) -> tuple[int, int] | None:
    """(entity swaps kept, entity swaps made), or None when the build had no ``entity_swap`` stage."""
    counts = funnel.get("entity_swap")
    if not counts or not _num(counts, "generated"):
        return None
    return int(_num(counts, "kept")), int(_num(counts, "generated"))


def headline(scan: BuildScan) -> dict[str, Any]:
    """The key figures: rows, methods, yields, lengths, cost; what the summary, artifact and compare print."""
    stages = stage_figures(scan.funnel)
    made = sum(s.generated for s in stages)
    tokens = sum(s.tokens for s in stages)
    answer_total = sum(scan.answer_types.values()) or 1
    types: dict[str, int] = {}
    for (_, kind), n in scan.answer_types.items():
        types[kind] = types.get(kind, 0) + n
    clusters = {size: n for size, n in scan.cluster_sizes.items() if size > 1}
    return {
        "rows": scan.rows,
        "methods": {m: scan.kept.get(m, 0) for m in scan.methods},
        "made": made,
        "yield": scan.rows / made if made else 0.0,
        "stages": stages,
        "median_tokens": {m: scan.token_quantile(m, 0.5) for m in scan.methods if scan.kept.get(m)},
        "mean_tokens": {m: scan.token_mean(m) for m in scan.methods if scan.kept.get(m)},
        "answer_types": {k: v / answer_total for k, v in sorted(types.items(), key=lambda kv: -kv[1])},
        "clusters_with_duplicates": sum(clusters.values()),
        "largest_cluster": max(clusters, default=1),
        "tokens": tokens,
        "tokens_per_kept": tokens / scan.rows if scan.rows else 0.0,
        "seconds": float(scan.manifest.get("seconds") or sum(s.seconds for s in stages)),
        "entity_swap": entity_swap_survival(scan.funnel),
        "dropped": sum(scan.dropped.values()),
        "rounds": sorted({r for r, _ in scan.rounds}),
    }
