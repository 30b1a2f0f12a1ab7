"""The report's key figures as text: a few terminal lines, Prefect markdown, and the A/B comparison table."""

from __future__ import annotations

from typing import Any

from pipeline.report.figures import headline
from pipeline.report.scan import BuildScan


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def entity_swap_line(figures: dict[str, Any]) -> str | None:
    survival = figures["entity_swap"]
    if survival is None:
        return None
    kept, made = survival
    share = kept / made if made else 0.0
    return (f"entity swaps kept after dedup: {kept:,} of {made:,} ({_pct(share)}); the rest are near-duplicates of "
            "their source question (same numbers, other names): dedup.near.max_per_cluster: 2 keeps them")


def summary_lines(scan: BuildScan) -> list[str]:
    """The short text summary ``mathaug report`` prints."""
    fig = headline(scan)
    methods = ", ".join(f"{m} {n:,}" for m, n in fig["methods"].items() if n)
    lengths = ", ".join(f"{m} {v:.0f}" for m, v in fig["median_tokens"].items())
    types = ", ".join(f"{k} {_pct(v)}" for k, v in list(fig["answer_types"].items())[:4])
    lines = [
        f"{scan.manifest.get('recipe_name') or scan.out_dir.name}: {fig['rows']:,} rows kept of {fig['made']:,} made "
        f"({_pct(fig['yield'])}) · run {scan.manifest.get('run_id') or '?'}",
        f"per method: {methods or 'none'}",
        f"median solution tokens: {lengths or 'n/a'}",
        f"answer types: {types or 'n/a'}",
        f"near-duplicate clusters: {fig['clusters_with_duplicates']:,} kept rows absorbed duplicates "
        f"(largest cluster {fig['largest_cluster']:,}); dropped/ holds {fig['dropped']:,} rows",
        f"cost: {fig['tokens']:,} model tokens ({fig['tokens_per_kept']:,.0f} per kept row), build {fig['seconds']:,.1f} s",
    ]
    if fig["rounds"]:
        lines.append(f"rounds: {', '.join(map(str, fig['rounds']))} (from {scan.round_source})")
    swap = entity_swap_line(fig)
    if swap:
        lines.append(swap)
    return lines


def summary_markdown(scan: BuildScan, where: str | None = None) -> str:
    """Key figures as markdown (the Prefect artifact): headline, per-method and per-stage tables; ``where`` says
    where the plots are."""
    fig = headline(scan)
    lines = [f"# Quality report: {fig['rows']:,} rows", ""]
    if where:
        lines += [where, ""]
    lines += [
        f"- **kept / made**: {fig['rows']:,} / {fig['made']:,} ({_pct(fig['yield'])})",
        "- **answer types**: " + (", ".join(f"{k} {_pct(v)}" for k, v in fig["answer_types"].items()) or "n/a"),
        f"- **near-duplicate clusters**: {fig['clusters_with_duplicates']:,} (largest {fig['largest_cluster']:,})",
        f"- **cost**: {fig['tokens']:,} model tokens, {fig['tokens_per_kept']:,.0f} per kept row",
    ]
    if (swap := entity_swap_line(fig)) is not None:
        lines.append(f"- **{swap.split(':', 1)[0]}**:{swap.split(':', 1)[1]}")
    lines += ["", "| method | kept rows | median tokens | mean tokens |", "|---|--:|--:|--:|"]
    for method, n in fig["methods"].items():
        if n:
            lines.append(f"| {method} | {n:,} | {fig['median_tokens'].get(method, 0):.0f} "
                         f"| {fig['mean_tokens'].get(method, 0):.0f} |")
    lines += ["", "| stage | made | kept | yield | tokens / kept | ms / kept |", "|---|--:|--:|--:|--:|--:|"]
    for s in fig["stages"]:
        tokens = "" if s.tokens_per_kept is None else f"{s.tokens_per_kept:,.0f}"
        ms = "" if s.seconds_per_kept is None else f"{1000 * s.seconds_per_kept:,.2f}"
        lines.append(f"| {s.stage} | {s.generated:,} | {s.kept:,} | {_pct(s.yield_)} | {tokens} | {ms} |")
    return "\n".join(lines) + "\n"


def compare_rows(a: BuildScan, b: BuildScan) -> list[tuple[str, str, str, str]]:
    """(figure, A, B, B − A) rows: rows per method, yields per stage, median and mean lengths, answer types."""
    fa, fb = headline(a), headline(b)
    rows: list[tuple[str, str, str, str]] = []

    def add(name: str, va: float | None, vb: float | None, fmt: str = "{:,.0f}", pct: bool = False) -> None:
        def show(v: float | None) -> str:
            return "—" if v is None else (_pct(v) if pct else fmt.format(v))

        if va is None or vb is None:
            delta = "—"
        else:
            delta = f"{100 * (vb - va):+.1f} pt" if pct else fmt.replace("{:", "{:+").format(vb - va)
        rows.append((name, show(va), show(vb), delta))

    add("rows kept", fa["rows"], fb["rows"])
    add("rows made", fa["made"], fb["made"])
    add("yield (kept / made)", fa["yield"], fb["yield"], pct=True)
    methods = list(dict.fromkeys([*fa["methods"], *fb["methods"]]))
    for m in methods:
        add(f"rows: {m}", fa["methods"].get(m), fb["methods"].get(m))
    stages_a = {s.stage: s for s in fa["stages"]}
    stages_b = {s.stage: s for s in fb["stages"]}
    for stage in dict.fromkeys([*stages_a, *stages_b]):
        sa, sb = stages_a.get(stage), stages_b.get(stage)
        add(f"yield: {stage}", sa.yield_ if sa else None, sb.yield_ if sb else None, pct=True)
    for m in methods:
        add(f"median tokens: {m}", fa["median_tokens"].get(m), fb["median_tokens"].get(m))
        add(f"mean tokens: {m}", fa["mean_tokens"].get(m), fb["mean_tokens"].get(m), "{:,.1f}")
    for kind in dict.fromkeys([*fa["answer_types"], *fb["answer_types"]]):
        add(f"answers: {kind}", fa["answer_types"].get(kind, 0.0), fb["answer_types"].get(kind, 0.0), pct=True)
    add("tokens per kept row", fa["tokens_per_kept"], fb["tokens_per_kept"])
    add("build seconds", fa["seconds"], fb["seconds"], "{:,.1f}")
    return rows
