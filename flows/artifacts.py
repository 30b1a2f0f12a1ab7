"""What a flow run shows in the Prefect UI: the funnel table and a markdown summary with sample rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.build import BuildResult
from pipeline.funnel import COLUMNS, Funnel
from pipeline.io.dropped import describe_dropped
from pipeline.io.shards import shard_paths

FUNNEL_KEY = "mathaug-funnel"
SUMMARY_KEY = "mathaug-summary"
REPORT_KEY = "mathaug-report"
# The UI table's columns: the funnel's own (pipeline.funnel.COLUMNS, in the order a reader follows a row's fate),
# with the model-request breakdown folded into one "tokens" column (tokens_in + tokens_out) before "seconds".
FOLDED_COLUMNS = ("requests", "cache_hits", "tokens_in", "tokens_out", "tokens_per_s")
FUNNEL_COLUMNS = (*(c for c in COLUMNS if c not in (*FOLDED_COLUMNS, "seconds")), "tokens", "seconds")


SAMPLE_COLUMNS = ["id", "method", "question", "solution", "answer", "verification", "parent_ids"]
# shown only when some stage counted them (the UI table is narrow: a column of zeros only pushes others out)
OPTIONAL_COLUMNS = ("rejected", "failed")


def funnel_table(funnel: Funnel) -> list[dict[str, Any]]:
    """One row per stage (plus the total) for the UI table: the funnel's columns, zeros included, except the
    optional ones nothing counted."""
    rows = funnel.rows()
    columns = [c for c in FUNNEL_COLUMNS if c not in OPTIONAL_COLUMNS or any(r.get(c) for r in rows)]
    table = []
    for row in rows:
        out: dict[str, Any] = {"stage": row["stage"]}
        for col in columns:
            if col == "tokens":
                out[col] = int(row.get("tokens_in", 0) + row.get("tokens_out", 0))
            elif col == "seconds":
                out[col] = round(float(row.get(col, 0)), 1)
            else:
                out[col] = int(row.get(col, 0))
        table.append(out)
    return table


def funnel_markdown(funnel: Funnel) -> str:
    rows = funnel_table(funnel)
    cols = ["stage", *[c for c in FUNNEL_COLUMNS if any(r.get(c) for r in rows)]]
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---" if c == "stage" else "--:" for c in cols) + "|",
    ]
    for row in rows:
        cells = [f"**{row['stage']}**" if row["stage"] == "total" else row["stage"]]
        cells += [f"{row[c]:,}" if isinstance(row[c], int) else f"{row[c]:,.1f}" for c in cols[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_markdown(out_dir: Path) -> str | None:
    """The quality report's key figures (pipeline.report: one column-wise pass, no plots) for the UI, with the
    command that draws them; None when the output cannot be read (the build's own artifacts still show)."""
    from pipeline.report import ReportError, report_page, scan_build
    from pipeline.report.summary import summary_markdown as report_summary

    try:
        scan = scan_build(out_dir, samples_per_method=0)
    except (ReportError, OSError):
        return None
    where = f"`mathaug report {out_dir}` draws these as plots, with sample rows, in `{report_page(out_dir)}`."
    return report_summary(scan, where=where)


def sample_rows(out_dir: Path, limit: int = 4, methods: list[str] | None = None) -> list[dict[str, Any]]:
    """A few rows of the written dataset, the first of each method (seed rows last: they are the least news).

    Scans only the ``method`` column, shard by shard, until every method in ``methods`` is seen, then reads the
    few shards that hold a sample: cheap on any dataset size.
    """
    first: dict[str, tuple[Path, int]] = {}
    try:
        for path in shard_paths(out_dir):
            column = pq.read_table(path, columns=["method"]).column("method")
            for method in pc.unique(column).to_pylist():
                first.setdefault(method, (path, pc.index(column, method).as_py()))
            if methods and set(methods) <= set(first):
                break
        order = sorted(first, key=lambda m: (m == "seed", m))[:limit]
        tables: dict[Path, Any] = {}
        rows = []
        for method in order:
            path, index = first[method]
            if path not in tables:  # only the columns shown: the nested ones cost most of a full read
                tables[path] = pq.read_table(path, columns=SAMPLE_COLUMNS)
            rows.append(tables[path].slice(index, 1).to_pylist()[0])
        return rows
    except (FileNotFoundError, OSError, KeyError):
        return []


def _clip(text: str | None, n: int = 400) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _quote(text: str) -> str:
    return "> " + text.replace("\n", "\n> ")


def summary_markdown(recipe_name: str, result: BuildResult, samples: list[dict[str, Any]]) -> str:
    manifest = result.manifest
    shards = len(manifest.get("shards", []))
    batches = f"{result.computed_batches} batches computed, {result.resumed_batches} resumed from disk"
    lines = [
        f"# {recipe_name}: {result.rows:,} rows",
        "",
        f"- **dataset**: `{result.out_dir / 'data'}` ({shards} Parquet shard{'s' if shards != 1 else ''})",
        f"- **run id**: `{result.run_id}` · **time**: {result.seconds:.1f} s · {batches}",
        '- **load it**: `datasets.load_dataset("parquet", data_dir="' + str(result.out_dir / "data") + '")`',
        *(
            [f"- **dropped**: {dropped} in `{result.out_dir / 'dropped'}`, each with its step and reason"]
            if (dropped := describe_dropped(manifest))
            else []
        ),
        "",
        "## Funnel",
        "",
        "Rows per stage: read (`in`), made (`generated`), thrown away while generating (`rejected`), passed or "
        "failed the answer check, removed as near-duplicates or benchmark overlaps, and finally `kept`.",
        "",
        funnel_markdown(result.funnel),
        "",
    ]
    if samples:
        lines += ["## Sample rows", ""]
        for rec in samples:
            ver = rec.get("verification") or {}
            lines += [
                f"### {rec['method']} · `{rec['id'][:12]}`",
                "",
                _quote("**Q:** " + _clip(rec.get("question"))),
                ">",
                _quote("**A:** " + _clip(rec.get("solution"))),
                "",
                f"answer `{rec.get('answer')}` · verification **{ver.get('status')}** ({ver.get('method')})"
                + (f" · derived from `{rec['parent_ids'][0][:12]}`" if rec.get("parent_ids") else ""),
                "",
            ]
    return "\n".join(lines)
