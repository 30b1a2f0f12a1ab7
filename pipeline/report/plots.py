"""The report's plots, drawn with matplotlib's Agg backend into PNG bytes.

Why matplotlib/Agg: it draws static PNGs without a display, a browser or JavaScript, so the page opens offline
from one file, the same PNGs go into the Prefect UI and the README, and the only new dependency is a
long-maintained wheel for every platform (plotly or bokeh would add a JavaScript bundle per page and render
only in a browser). Every function takes a ``BuildScan`` and returns a ``Plot`` or None when the rows carry
nothing to draw (the page then says why instead of showing an empty frame).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # before pyplot: never look for a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402

from pipeline.report.answers import ANSWER_TYPES  # noqa: E402
from pipeline.report.figures import stage_figures  # noqa: E402
from pipeline.report.scan import MAX_TOKENS, BuildScan  # noqa: E402

DPI = 100
PALETTE = plt.get_cmap("tab10").colors
TOP_REASONS = 8  # rejection reasons shown by name; the rest are summed as "other"


@dataclass(frozen=True)
class Plot:
    name: str  # file stem: OUT/report/<name>.png
    title: str
    caption: str
    png: bytes


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _label_bars(ax: plt.Axes, bars: BarContainer, values: list[float], fmt: str = "{:,.0f}") -> None:
    """Write each bar's value at its end (readers want the number, not an estimate from the axis)."""
    for bar, value in zip(bars, values):
        ax.annotate(fmt.format(value), (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)


def funnel_plot(scan: BuildScan) -> Plot | None:
    """Left: every candidate's fate over the whole build. Right: the same, stage by stage."""
    stages = stage_figures(scan.funnel)
    if not stages:
        return None
    reasons: dict[str, int] = {}
    for s in stages:
        for reason, n in s.rejected.items():
            reasons[reason] = reasons.get(reason, 0) + n
    ranked = sorted(reasons.items(), key=lambda kv: -kv[1])
    shown = ranked[:TOP_REASONS] + ([("other", sum(n for _, n in ranked[TOP_REASONS:]))] if ranked[TOP_REASONS:] else [])
    steps: list[tuple[str, int, str]] = [("candidates", sum(s.candidates for s in stages), "#888888")]
    steps += [(f"rejected: {reason}", n, "#d62728") for reason, n in shown]
    steps += [
        ("generated", sum(s.generated for s in stages), "#1f77b4"),
        ("verified", sum(s.verified for s in stages), "#17becf"),
        ("failed verification", sum(s.failed for s in stages), "#d62728"),
        ("duplicate", sum(s.duplicates for s in stages), "#ff7f0e"),
        ("contaminated", sum(s.contaminated for s in stages), "#9467bd"),
        ("kept", sum(s.kept for s in stages), "#2ca02c"),
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, max(3.5, 0.32 * len(steps) + 1)),
                                      gridspec_kw={"width_ratios": [1.1, 1]})
    labels = [name for name, _, _ in steps][::-1]
    values = [n for _, n, _ in steps][::-1]
    bars = left.barh(labels, values, color=[c for _, _, c in steps][::-1])
    _label_bars(left, bars, values)
    left.set_title("all stages: generated → rejected by reason → verified → duplicate → contaminated → kept",
                   fontsize=9)
    left.set_xlabel("rows")
    left.margins(x=0.15)
    fates = [("kept", "#2ca02c", lambda s: s.kept), ("duplicate", "#ff7f0e", lambda s: s.duplicates),
             ("contaminated", "#9467bd", lambda s: s.contaminated), ("failed", "#d62728", lambda s: s.failed),
             ("rejected", "#f4a6a6", lambda s: sum(s.rejected.values())),
             ("not written", "#cccccc", lambda s: s.not_written)]
    names = [s.stage for s in stages][::-1]
    base = np.zeros(len(stages))
    for label, color, value in fates:
        widths = np.array([value(s) for s in stages][::-1], dtype=float)
        if widths.any():
            right.barh(names, widths, left=base, color=color, label=label)
            base += widths
    right.set_title("fate of each stage's candidates", fontsize=9)
    right.set_xlabel("rows")
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return Plot("funnel", "Funnel per stage", "Where the rows went. Candidates a stage threw away while generating "
                "(by reason), rows that failed verification, near/exact duplicates, benchmark overlaps, and the rows "
                "kept in data/.", _png(fig))


def kept_plot(scan: BuildScan) -> Plot | None:
    """Kept rows per method, each bar split by how the rows were verified."""
    if not scan.rows:
        return None
    methods = [m for m in scan.methods if scan.kept.get(m)]
    vmethods = sorted({v for _, v in scan.by_verification}, key=lambda v: -sum(
        n for (_, vv), n in scan.by_verification.items() if vv == v))
    fig, ax = plt.subplots(figsize=(10, max(2.5, 0.5 * len(methods) + 1.2)))
    base = np.zeros(len(methods))
    for i, v in enumerate(vmethods):
        widths = np.array([scan.by_verification.get((m, v), 0) for m in methods][::-1], dtype=float)
        ax.barh(methods[::-1], widths, left=base, color=PALETTE[i % len(PALETTE)], label=v)
        base += widths
    for y, total in enumerate(base):
        ax.annotate(f"{int(total):,}", (total, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_xlabel("kept rows")
    ax.margins(x=0.12)
    ax.legend(title="verification method", fontsize=8, title_fontsize=8, loc="lower right")
    fig.tight_layout()
    return Plot("kept", "Kept rows per method and verification method",
                "Rows in data/ per method (the stage that made them), coloured by verification.method.", _png(fig))


def _bins(scan: BuildScan, methods: list[str]) -> np.ndarray:
    top = max(scan.token_quantile(m, 0.99) for m in methods)
    width = max(1, int(np.ceil((top + 1) / 60)))
    return np.arange(0, min(MAX_TOKENS, top) + 2 * width, width)


def length_plot(scan: BuildScan) -> Plot | None:
    """Solution length histograms (share of each method's rows), medians marked."""
    methods = [m for m in scan.methods if scan.token_hist.get(m) is not None and scan.token_hist[m].sum()]
    if not methods:
        return None
    edges = _bins(scan, methods)
    fig, ax = plt.subplots(figsize=(10, 4))
    for i, method in enumerate(methods):
        hist = scan.token_hist[method]
        counts = np.add.reduceat(hist, edges[:-1].astype(int))[: len(edges) - 1]
        counts[-1] += hist[int(edges[-1]):].sum()  # everything beyond the last edge lands in the last bin
        share = counts / hist.sum()
        color = PALETTE[i % len(PALETTE)]
        median = scan.token_quantile(method, 0.5)
        ax.stairs(share, edges, color=color, linewidth=1.6, label=f"{method} (median {median:.0f}, n={hist.sum():,})")
        ax.axvline(median, color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("solution length (tokens: words + punctuation marks; last bin includes longer)")
    ax.set_ylabel("share of the method's rows")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return Plot("lengths", "Solution length per method",
                "Tokens per solution, counted as words and single punctuation/symbol characters (regex "
                r"\w+|[^\w\s]; no tokenizer download). Dotted lines: medians.", _png(fig))


def _level_order(label: str) -> tuple[int, float, str]:
    digits = "".join(ch for ch in label if ch.isdigit())
    return (0, float(digits), label) if digits else (1, 0.0, label)


def difficulty_plot(scan: BuildScan) -> Plot | None:
    """Difficulty labels per method (MATH level, tier) and solver agreement (votes / samples) when rows carry them."""
    panels = int(bool(scan.difficulty)) + int(bool(scan.agreement))
    if not panels:
        return None
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4), squeeze=False)
    ax_iter = iter(axes[0])
    if scan.difficulty:
        ax = next(ax_iter)
        labels = sorted({d for _, d in scan.difficulty}, key=_level_order)
        methods = [m for m in scan.methods if any(mm == m for mm, _ in scan.difficulty)]
        x = np.arange(len(labels))
        width = 0.8 / len(methods)
        for i, m in enumerate(methods):
            ax.bar(x + i * width, [scan.difficulty.get((m, d), 0) for d in labels], width, label=m,
                   color=PALETTE[i % len(PALETTE)])
        ax.set_xticks(x + 0.4 - width / 2, labels, rotation=30 if len(labels) > 6 else 0, fontsize=8)
        ax.set_ylabel("kept rows")
        ax.set_title("difficulty label (row field `difficulty`)", fontsize=9)
        ax.legend(fontsize=8)
    if scan.agreement:
        ax = next(ax_iter)
        methods = [m for m in scan.methods if any(mm == m for mm, _, _ in scan.agreement)]
        bins = np.linspace(0, 1, 11)
        for i, m in enumerate(methods):
            ratios = [votes / samples for (mm, votes, samples) in scan.agreement if mm == m]
            weights = [n for (mm, _, _), n in scan.agreement.items() if mm == m]
            ax.hist(ratios, bins=bins, weights=weights, histtype="step", linewidth=1.6, label=m,
                    color=PALETTE[i % len(PALETTE)])
        ax.set_xlabel("solver agreement: verification.votes / verification.samples")
        ax.set_ylabel("kept rows")
        ax.set_title("agreement of sampled solutions", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return Plot("difficulty", "Difficulty", "What the rows say about difficulty: their `difficulty` label (MATH "
                "level, tier) and, for majority-voted rows, the share of sampled solutions that agreed.", _png(fig))


def answer_types_plot(scan: BuildScan) -> Plot | None:
    """Share of each answer type per method: a build of only small integers shows at a glance."""
    if not scan.answer_types:
        return None
    methods = [m for m in scan.methods if scan.kept.get(m)]
    kinds = [k for k in ANSWER_TYPES if any(kk == k for _, kk in scan.answer_types)]
    fig, ax = plt.subplots(figsize=(10, max(2.5, 0.5 * len(methods) + 1.2)))
    base = np.zeros(len(methods))
    totals = np.array([scan.kept.get(m, 0) for m in methods][::-1], dtype=float)
    for i, kind in enumerate(kinds):
        shares = np.array([scan.answer_types.get((m, kind), 0) for m in methods][::-1]) / np.maximum(totals, 1)
        ax.barh(methods[::-1], shares, left=base, color=PALETTE[i % len(PALETTE)], label=kind)
        base += shares
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of kept rows")
    ax.legend(ncol=len(kinds), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    fig.tight_layout()
    return Plot("answer_types", "Answer types", "The kind of final answer per method (integer, decimal, fraction, "
                "interval, tuple, expression, text), classified by a few regular expressions.", _png(fig))


def cluster_plot(scan: BuildScan) -> Plot | None:
    """Near-duplicate cluster sizes: how many rows each kept row stands for (itself + rows folded into it)."""
    multi = {size: n for size, n in scan.cluster_sizes.items() if size > 1}
    if not multi:
        return None
    cap = 20
    sizes = np.arange(2, cap + 1)
    counts = [multi.get(int(s), 0) for s in sizes[:-1]] + [sum(n for s, n in multi.items() if s >= cap)]
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.bar([str(s) for s in sizes[:-1]] + [f"≥{cap}"], counts, color="#ff7f0e")
    if max(counts) > 50 * max(1, min(c for c in counts if c)):
        ax.set_yscale("log")  # a long tail of big clusters stays visible beside the many pairs
    ax.set_xlabel("cluster size (kept row + the duplicates folded into it)")
    ax.set_ylabel("clusters")
    singletons = scan.cluster_sizes.get(1, 0)
    ax.set_title(f"{sum(multi.values()):,} kept rows absorbed duplicates; {singletons:,} had none", fontsize=9)
    fig.tight_layout()
    return Plot("clusters", "Near-duplicate cluster sizes", "From each kept row's `dedup.dropped` (rows the exact "
                "and near dedup folded into it); the removed rows are in dropped/ with `duplicate_of`.", _png(fig))


def cost_plot(scan: BuildScan) -> Plot | None:
    """What one kept row cost per stage: model tokens (when any stage used a model) and stage milliseconds."""
    stages = [s for s in stage_figures(scan.funnel) if s.kept and (s.tokens or s.seconds)]
    if not stages:
        return None
    with_tokens = any(s.tokens for s in stages)
    fig, axes = plt.subplots(1, 1 + with_tokens, figsize=(12 if with_tokens else 7, max(2.5, 0.45 * len(stages) + 1.2)),
                             squeeze=False)
    names = [s.stage for s in stages][::-1]
    if with_tokens:
        tokens = [s.tokens_per_kept or 0 for s in stages][::-1]
        tok_ax = axes[0][0]
        _label_bars(tok_ax, tok_ax.barh(names, tokens, color="#1f77b4"), tokens, "{:,.0f}")
        tok_ax.set_xlabel("model tokens (in + out) per kept row")
        tok_ax.margins(x=0.2)
    sec_ax = axes[0][-1]
    seconds = [(s.seconds_per_kept or 0) * 1000 for s in stages][::-1]
    _label_bars(sec_ax, sec_ax.barh(names, seconds, color="#8c564b"), seconds, "{:,.2f}")
    sec_ax.set_xlabel("stage milliseconds per kept row")
    sec_ax.margins(x=0.2)
    if not with_tokens:
        sec_ax.set_title("no model tokens: every stage of this build is LLM-free", fontsize=9)
    fig.tight_layout()
    return Plot("cost", "Tokens and seconds per kept row", "From the funnel: each stage's model tokens and wall "
                "seconds divided by the rows of that stage that were kept (LLM-free stages use no tokens).", _png(fig))


def rounds_plot(scan: BuildScan) -> Plot | None:
    """Kept rows and mean solution length per round: whether later rounds still add (and how long) rows."""
    if not scan.rounds:
        return None
    rounds = sorted({r for r, _ in scan.rounds})
    methods = [m for m in scan.methods if any(mm == m for _, mm in scan.rounds)]
    fig, (rows_ax, len_ax) = plt.subplots(1, 2, figsize=(12, 3.8))
    for i, m in enumerate(methods):
        color = PALETTE[i % len(PALETTE)]
        kept = [scan.rounds.get((r, m), 0) for r in rounds]
        mean_tokens = [scan.round_tokens.get((r, m), 0) / n if n else np.nan for r, n in zip(rounds, kept)]
        rows_ax.plot(rounds, kept, marker="o", color=color, label=m)
        len_ax.plot(rounds, mean_tokens, marker="o", color=color, label=m)
    rows_ax.set_xlabel("round")
    rows_ax.set_ylabel("kept rows")
    rows_ax.set_ylim(bottom=0)
    len_ax.set_xlabel("round")
    len_ax.set_ylabel("mean solution tokens")
    for ax in (rows_ax, len_ax):
        ax.set_xticks(rounds)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return Plot("rounds", "Per round", f"Kept rows and mean solution length per round (round from `{scan.round_source}`)."
                , _png(fig))


PLOTS = (funnel_plot, kept_plot, length_plot, difficulty_plot, answer_types_plot, cluster_plot, cost_plot,
         rounds_plot)
# what the page says instead of a plot the rows give nothing to draw for
ABSENT = {
    "funnel_plot": ("Funnel per stage", "the manifest has no funnel"),
    "kept_plot": ("Kept rows per method and verification method", "the build kept no rows"),
    "length_plot": ("Solution length per method", "no row has a solution"),
    "difficulty_plot": ("Difficulty", "no row carries a `difficulty` label or solver votes (verification.samples > 1)"),
    "answer_types_plot": ("Answer types", "the build kept no rows"),
    "cluster_plot": ("Near-duplicate cluster sizes", "no kept row absorbed a duplicate"),
    "cost_plot": ("Tokens and seconds per kept row", "the funnel records no tokens or seconds"),
    "rounds_plot": ("Per round", "the rows carry no round (the build ran no repeated rounds)"),
}
