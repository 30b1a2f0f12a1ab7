"""``mathaug report OUT`` (write the quality report) and ``mathaug report A B`` (compare two builds)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=True)
out_console = Console()


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``report`` to the ``mathaug`` app."""

    @app.command("report")
    def report_command(
        out: Annotated[Path, typer.Argument(metavar="OUT", help="a mathaug output directory")],
        other: Annotated[
            Path | None, typer.Argument(metavar="[B]", help="a second output directory: compare OUT (A) with B")
        ] = None,
        seed: Annotated[int, typer.Option(help="seed of the random sample rows")] = 0,
    ) -> None:
        """Write OUT/report/index.html (plots, key figures, sample rows) and print a summary; with B, compare."""
        from pipeline.report import ReportError, scan_build, write_report
        from pipeline.report.summary import compare_rows, summary_lines

        try:
            if other is None:
                report = write_report(out, seed=seed)
            else:
                a, b = scan_build(out, samples_per_method=0), scan_build(other, samples_per_method=0)
        except ReportError as exc:
            _fail(str(exc))
        if other is None:
            for line in summary_lines(report.scan):
                out_console.print(escape(line), highlight=False, soft_wrap=True)
            out_console.print(
                f"[green]report:[/] {report.page} ({len(report.pngs)} plots) in {report.seconds:.1f}s", highlight=False
            )
            return
        table = Table(title="A vs B", caption=f"A = {out}   B = {other}")
        for name, justify in (("figure", "left"), ("A", "right"), ("B", "right"), ("B − A", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for row in compare_rows(a, b):
            table.add_row(*(escape(cell) for cell in row))
        out_console.print(table)
