"""``mathaug cache stats DIR``: request-cache hits and misses of a build, and why the misses missed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

CACHE_RELPATH = Path(".mathaug") / "llm_cache.sqlite"


def resolve_cache_path(target: Path) -> Path:
    """A build output directory (its ``.mathaug/llm_cache.sqlite``) or the SQLite file itself."""
    if target.is_file():
        return target
    candidate = target / CACHE_RELPATH
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(f"no request cache at {candidate} (is {target} a build output directory?)")


def stats(
    target: Annotated[Path, typer.Argument(help="build output directory, or the cache's .sqlite file")],
    run: Annotated[
        str | None, typer.Option("--run", help="a run's session id, or 'all' (default: the latest run)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Show request-cache hits and misses per stage, and why each miss missed."""
    from pipeline.llm.cache import cache_stats

    try:
        report = cache_stats(resolve_cache_path(target), session=run)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"request cache: run {report['session']} ({report['entries']} entries)")
    for col in ("stage", "requests", "hits", "misses", "miss reasons"):
        table.add_column(col, justify="left" if col in ("stage", "miss reasons") else "right")
    total = {"hits": 0, "misses": 0}
    for stage, st in report["stages"].items():
        total["hits"] += st["hits"]
        total["misses"] += st["misses"]
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(st["miss_reasons"].items(), key=lambda kv: -kv[1]))
        table.add_row(
            stage, str(st["hits"] + st["misses"]), str(st["hits"]), str(st["misses"]), reasons or "-"
        )
    table.add_row("total", str(total["hits"] + total["misses"]), str(total["hits"]), str(total["misses"]), "")
    table.caption = (
        "miss reasons: new = never asked before; template / messages / sampling / model = that part of the key "
        "differs from the last time the same request was asked"
    )
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add the ``cache`` command group (``cache stats``) to the mathaug CLI."""
    cache_app = typer.Typer(help="Inspect the LLM request cache of a build.", no_args_is_help=True)
    cache_app.command("stats")(stats)
    app.add_typer(cache_app, name="cache")
