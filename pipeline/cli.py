"""``mathaug`` command line: build, inspect, and the helpers each part registers (dedup, cache, deploy)."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from pipeline.funnel import COLUMNS, Funnel

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Verified, deduplicated math SFT data.")
console = Console(stderr=True)
out_console = Console()


class RichReporter:
    """A progress bar per stage."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def stage_started(self, stage: str, total: int) -> None:
        self.tasks[stage] = self.progress.add_task(stage, total=max(total, 1))

    def advance(self, stage: str, n: int = 1) -> None:
        if stage in self.tasks:
            self.progress.advance(self.tasks[stage], n)

    def stage_finished(self, stage: str) -> None:
        if stage in self.tasks:
            task = self.tasks[stage]
            self.progress.update(task, completed=self.progress.tasks[task].total)

    def message(self, text: str) -> None:
        self.progress.console.print(text, soft_wrap=True, highlight=False, markup=False)  # one line, not cut


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


SHORT = {"generated": "gen", "rejected": "rej", "verified": "ver", "failed": "fail", "duplicates": "dup",
         "contaminated": "contam", "requests": "req", "cache_hits": "cached", "tokens_in": "tok in",
         "tokens_out": "tok out", "tokens_per_s": "tok/s", "seconds": "sec"}


def funnel_table(funnel: Funnel | dict[str, Any], title: str = "funnel") -> Table:
    funnel = funnel if isinstance(funnel, Funnel) else Funnel(funnel)
    rows = funnel.rows()
    cols = [c for c in COLUMNS if any(r[c] for r in rows)]
    table = Table(title=title, caption="gen=generated rej=rejected ver=verified dup=duplicates contam=contaminated")
    table.add_column("stage", style="bold", no_wrap=True)
    for col in cols:
        table.add_column(SHORT.get(col, col), justify="right", no_wrap=True)
    for row in rows:
        table.add_row(row["stage"], *(f"{row[c]:,}" if isinstance(row[c], int) else str(row[c]) for c in cols))
    return table


def _print_version(value: bool) -> None:
    if value:
        from pipeline import __version__

        out_console.print(f"mathaug {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Verified, deduplicated math SFT data."""


def say(text: str) -> None:
    """One line to the user on stderr, never wrapped at the terminal's width."""
    console.print(text, soft_wrap=True, highlight=False, markup=False)


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def build(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML, or the name of a shipped one (`mathaug recipes`)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")],
    limit: Annotated[int | None, typer.Option(help="use only the first N seed rows")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="discard an earlier run in OUT and start over")] = False,
    resume: Annotated[
        bool,
        typer.Option("--resume/--no-resume", help="continue the run already in OUT (default); --no-resume refuses one"),
    ] = True,
    skip_bad_rows: Annotated[bool, typer.Option("--skip-bad-rows", help="count and skip malformed seed rows")] = False,
    direct: Annotated[
        bool, typer.Option("--direct", help="run the stages in-process without Prefect (no flow run is recorded)")
    ] = False,
) -> None:
    """Build a dataset from RECIPE into OUT (resumes an interrupted build of the same recipe)."""
    from pipeline.build import BuildError, run_build
    from pipeline.interrupts import os_error_message, stop_on_signals
    from pipeline.io.rundir import run_lock
    from pipeline.io.seeds import SeedError
    from pipeline.llm.errors import LLMError
    from pipeline.preflight import preflight
    from pipeline.recipe import RecipeError, load_recipe
    from pipeline.stage_runner import RoundPaused

    try:  # everything that can be checked is checked before Prefect starts or a byte is written
        parsed = load_recipe(recipe)
        preflight(parsed, out, limit=limit, fresh=fresh, resume=resume, skip_bad_rows=skip_bad_rows)
    except (RecipeError, SeedError, BuildError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_error_message(exc, out))
    try:
        with stop_on_signals(say, out), run_lock(out), progress_bar() as progress:
            reporter = RichReporter(progress)
            if direct:
                result = run_build(parsed, out, limit=limit, fresh=fresh, skip_bad_rows=skip_bad_rows,
                                   reporter=reporter, resume=resume)
            else:
                from flows.build import build_with_flow

                result = build_with_flow(recipe, out, limit=limit, fresh=fresh, skip_bad_rows=skip_bad_rows,
                                         reporter=reporter, resume=resume)
    except RoundPaused as exc:  # a round waits for an input (LLM2LLM's next student): say what to run next
        from flows.rounds import record_stop
        from pipeline.recipe import resolve_recipe_path

        record_stop(out, resolve_recipe_path(recipe), limit, skip_bad_rows, direct, exc.needs)
        console.print(str(exc), highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(3) from None
    except (RecipeError, SeedError, BuildError, FileNotFoundError) as exc:
        fail(str(exc))
    except LLMError as exc:
        fail(f"{exc} (finished batches and model answers are kept: rerun the same command to resume)")
    except OSError as exc:
        fail(os_error_message(exc, out))
    print_wide(funnel_table(result.funnel, title=f"{parsed.name}: funnel"))
    resumed = f", {result.resumed_batches} batches resumed from disk" if result.resumed_batches else ""
    out_console.print(
        f"[green]wrote {result.rows:,} rows[/] in {len(result.manifest['shards'])} shard(s) to "
        f"[bold]{result.out_dir / 'data'}[/] in {result.seconds:.1f}s{resumed}"
    )


def print_wide(table: Table) -> None:
    """Print a table whole: piped or redirected, rich would otherwise cut it to 80 columns."""
    if not out_console.is_terminal and "COLUMNS" not in os.environ:
        needed = Measurement.get(out_console, out_console.options.update_width(10_000), table).maximum
        out_console.width = max(out_console.width, needed)
    out_console.print(table)


@app.command()
def inspect(
    out: Annotated[Path, typer.Argument(help="a mathaug output directory")],
    samples: Annotated[int, typer.Option(help="sample rows to show")] = 3,
) -> None:
    """Counts per method and verification status, the funnel, and a few sample rows."""
    from pipeline.io.dropped import describe_dropped
    from pipeline.io.shards import read_manifest, read_records

    manifest = read_manifest(out)
    if manifest is None:
        fail(f"{out}: no manifest.json (not a mathaug output directory)")
    by_method: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    shown: list[dict[str, Any]] = []
    seen_methods: set[str] = set()
    for rec in read_records(out):
        by_method[rec["method"]] += 1
        by_status[(rec.get("verification") or {}).get("status") or "none"] += 1
        if len(shown) < samples and rec["method"] not in seen_methods:
            shown.append(rec)
            seen_methods.add(rec["method"])
    out_console.print(f"[bold]{out}[/]: {sum(by_method.values()):,} rows · run {manifest.get('run_id')}")
    table = Table(title="rows per method")
    table.add_column("method")
    table.add_column("rows", justify="right")
    for method, n in by_method.most_common():
        table.add_row(method, f"{n:,}")
    out_console.print(table)
    status = Table(title="verification status")
    status.add_column("status")
    status.add_column("rows", justify="right")
    for name, n in by_status.most_common():
        status.add_row(name, f"{n:,}")
    out_console.print(status)
    if manifest.get("funnel"):
        funnel = Funnel(manifest["funnel"])
        print_wide(funnel_table(funnel, title="funnel (from manifest)"))
        for stage in funnel.stages():
            reasons = sorted(funnel.reasons(stage).items(), key=lambda kv: -kv[1])
            if reasons:
                shown_reasons = ", ".join(f"{k}={v:,}" for k, v in reasons[:8])
                out_console.print(f"[dim]{stage} rejected: {shown_reasons}[/]", highlight=False)
    dropped = describe_dropped(manifest)
    if dropped:
        out_console.print(
            f"dropped: {dropped}, row by row with the reason in [bold]{Path(out) / 'dropped'}[/]", highlight=False
        )
    for rec in shown:
        out_console.rule(f"{rec['method']} · {rec['id']}")
        out_console.print(f"[bold]Q:[/] {rec['question']}", highlight=False)
        out_console.print(f"[bold]A:[/] {rec.get('solution')}", highlight=False)
        ver = rec.get("verification") or {}
        out_console.print(
            f"[dim]answer={rec.get('answer')!r} verification={ver.get('status')}/{ver.get('method')} "
            f"parents={rec.get('parent_ids')} source={json.dumps(rec.get('source'))}[/]",
            highlight=False,
        )


@app.command()
def recipes() -> None:
    """The recipes that ship with mathaug: pass a name (e.g. `mathaug build quickstart -o out`) or copy one."""
    from pipeline.paths import shipped_recipes
    from pipeline.recipe import RecipeError, load_recipe

    table = Table(title="shipped recipes", caption="copy one to start your own: the file wins over the name")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("stages")
    table.add_column("description")
    table.add_column("file", overflow="fold")
    for name, path in shipped_recipes().items():
        try:
            parsed = load_recipe(path)
        except RecipeError as exc:
            table.add_row(name, "", f"[red]{escape(str(exc))}[/]", str(path))
            continue
        stages = ", ".join(spec.method for spec in parsed.stages)
        description = " ".join((parsed.description or "").split())
        table.add_row(name, stages, escape(description), str(path))
    out_console.print(table)


# Parts that own their own commands register them here (each module has ``register(app)``).
for _module in ("pipeline.dedup.commands", "pipeline.llm.commands", "pipeline.report.commands",
                "pipeline.sandbox.commands", "flows.commands", "flows.rounds"):
    try:
        importlib.import_module(_module).register(app)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted; rerun the same command to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
