"""``mathaug report``: a quality report of a build people look at (plots, key figures, sample rows).

``write_report(OUT)`` scans the shards once, column-wise (``scan.py``), derives the figures (``figures.py``),
draws the plots (``plots.py``, matplotlib/Agg) and writes ``OUT/report/index.html`` (one self-contained page,
``page.py``) plus one PNG per plot. ``summary.py`` turns the same figures into terminal lines, Prefect markdown
and the two-build comparison. Nothing here imports Prefect: ``flows/artifacts.py`` calls in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.io.shards import atomic_write_bytes
from pipeline.report.scan import BuildScan, ReportError, load_manifest, scan_build

REPORT_SUBDIR = "report"
REPORT_PAGE = "index.html"

__all__ = ["REPORT_PAGE", "REPORT_SUBDIR", "Report", "ReportError", "load_manifest", "report_page", "scan_build",
           "write_report"]


@dataclass(frozen=True)
class Report:
    page: Path
    pngs: list[Path]
    scan: BuildScan
    seconds: float


def report_page(out_dir: Path) -> Path:
    """Where the report of ``out_dir`` lives (whether or not it was written yet)."""
    return Path(out_dir) / REPORT_SUBDIR / REPORT_PAGE


def write_report(out_dir: Path, *, seed: int = 0) -> Report:
    """Scan ``out_dir`` and write ``out_dir/report/``: ``index.html`` and the PNGs (stale PNGs removed)."""
    from pipeline.report.page import render_page
    from pipeline.report.plots import ABSENT, PLOTS

    started = time.perf_counter()
    scan = scan_build(out_dir, seed=seed)
    plots, absent = [], []
    for draw in PLOTS:
        plot = draw(scan)
        if plot is None:
            absent.append(ABSENT[draw.__name__])
        else:
            plots.append(plot)
    directory = Path(out_dir) / REPORT_SUBDIR
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.png"):
        old.unlink()
    pngs = []
    for plot in plots:
        path = directory / f"{plot.name}.png"
        atomic_write_bytes(path, plot.png)
        pngs.append(path)
    page = directory / REPORT_PAGE
    atomic_write_bytes(page, render_page(scan, plots, absent).encode("utf-8"))
    return Report(page, pngs, scan, time.perf_counter() - started)
