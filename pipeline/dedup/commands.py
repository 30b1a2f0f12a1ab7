"""``mathaug dedup`` and ``mathaug decontaminate``: the dedup steps over a shard directory or a JSONL file."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.dedup.decontam import DECONTAM_THRESHOLD, DEFAULT_BENCHMARKS
from pipeline.dedup.steps import decontaminate, exact_dedup, near_dedup
from pipeline.funnel import Funnel

WORK_SUBDIR = ".mathaug"
console = Console(stderr=True)
out_console = Console()


def _input_rows(path: Path) -> int | None:
    from pipeline.io.shards import read_manifest

    if path.is_dir():
        manifest = read_manifest(path)
        if manifest and manifest.get("rows") is not None:
            return int(manifest["rows"])
    return None


def _check_paths(in_path: Path, out_dir: Path) -> None:
    if not in_path.exists():
        raise FileNotFoundError(f"{in_path}: no such file or directory")
    if in_path.resolve() == out_dir.resolve():
        raise ValueError(
            "--out must be a different directory from the input (the output replaces its shards)"
        )


def _counting(records: Iterable[dict[str, Any]], counter: Counter[str]) -> Iterator[dict[str, Any]]:
    for rec in records:
        counter[rec["method"]] += 1
        yield rec


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _reporter(progress: Progress, total: int | None) -> Callable[[str, int], None]:
    tasks: dict[str, Any] = {}

    def report(phase: str, n: int) -> None:
        if phase.startswith("band "):  # "band k/n" from clustering: one bar for all bands
            done, bands = map(int, phase.split()[1].split("/"))
            if "clustering" not in tasks:
                tasks["clustering"] = progress.add_task("clustering", total=bands)
            progress.update(tasks["clustering"], completed=done)
            return
        if phase not in tasks:
            size = total if phase in {"reading", "hashing", "writing", "checking"} else None
            tasks[phase] = progress.add_task(phase, total=size)
        progress.advance(tasks[phase], n)

    return report


def run_dedup(
    in_path: Path,
    out_dir: Path,
    threshold: float = 0.8,
    against: Sequence[Path] = (),
    *,
    num_perm: int = 128,
    exact: bool = True,
    stage_order: Sequence[str] = (),
    workers: int | None = None,
    rows_per_shard: int = 50_000,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Exact then near dedup of ``in_path`` into ``out_dir``; returns the summary (also in the manifest)."""
    from pipeline.io.shards import ShardWriter, read_records

    in_path, out_dir = Path(in_path), Path(out_dir)
    _check_paths(in_path, out_dir)
    for directory in against:
        if not Path(directory).exists():
            raise FileNotFoundError(f"--against {directory}: no such directory")
        if Path(directory).resolve() == out_dir.resolve():
            raise ValueError("--against must not be the output directory (the output replaces its shards)")
    started = time.perf_counter()
    funnel = Funnel()
    seen: Counter[str] = Counter()
    rows: Iterable[dict[str, Any]] = _counting(read_records(in_path), seen)
    if exact:
        rows = exact_dedup(
            rows, funnel=funnel, stage_order=stage_order, work_dir=out_dir / WORK_SUBDIR / "exact"
        )
    rows = near_dedup(
        rows,
        threshold=threshold,
        num_perm=num_perm,
        funnel=funnel,
        index_dir=out_dir / WORK_SUBDIR / "dedup-index",
        against=[Path(a) for a in against],
        stage_order=stage_order,
        workers=workers,
        progress=progress,
    )
    kept = 0
    clusters = 0
    params = {
        "threshold": threshold,
        "num_perm": num_perm,
        "exact": exact,
        "against": [str(a) for a in against],
    }
    with ShardWriter(out_dir, rows_per_shard=rows_per_shard, manifest_extra={"dedup": params}) as writer:
        buffer: list[dict[str, Any]] = []
        for rec in rows:
            kept += 1
            funnel.add(rec["method"], "kept", 1)
            clusters += bool(rec["dedup"]["dropped"])
            buffer.append(rec)
            if len(buffer) >= 10_000:
                writer.write(buffer)
                buffer = []
        writer.write(buffer)
        for method, n in seen.items():
            funnel.add(method, "in", n)
        summary = {
            "rows_in": sum(seen.values()),
            "duplicates": int(sum(funnel.get(m, "duplicates") for m in funnel.stages())),
            "kept": kept,
            "clusters_with_duplicates": clusters,
            "seconds": round(time.perf_counter() - started, 2),
            "funnel": funnel.to_dict(),
        }
        writer.close(
            dedup={**params, **{k: v for k, v in summary.items() if k != "funnel"}}, funnel=funnel.to_dict()
        )
    return summary


def run_decontaminate(
    in_path: Path,
    out_dir: Path,
    benchmarks: Sequence[str] = DEFAULT_BENCHMARKS,
    ngram: int = 13,
    *,
    threshold: float = DECONTAM_THRESHOLD,
    rows_per_shard: int = 50_000,
    progress: Callable[[str, int], None] | None = None,
    semantic: Any = None,
    models: dict[str, Any] | None = None,
    base_dir: Path | None = None,
) -> dict[str, Any]:
    """Drop benchmark-overlapping rows of ``in_path`` into ``out_dir``; the dropped rows are listed in
    ``out_dir/.mathaug/contaminated.jsonl`` (id, method, benchmark item, detail, question). ``semantic`` (a
    ``SemanticDecontaminateSpec``) adds the embedding tier; ``models`` holds its judge."""
    from pipeline.io.shards import ShardWriter, read_records

    in_path, out_dir = Path(in_path), Path(out_dir)
    _check_paths(in_path, out_dir)
    started = time.perf_counter()
    funnel = Funnel()
    seen: Counter[str] = Counter()
    by_benchmark: Counter[str] = Counter()
    report_path = out_dir / WORK_SUBDIR / "contaminated.jsonl"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    kept = 0
    params: dict[str, Any] = {"benchmarks": list(benchmarks), "ngram": ngram, "threshold": threshold}
    checker = None
    if semantic is not None and semantic.enabled:
        from pipeline.dedup.semantic import from_spec

        params["semantic"] = semantic.model_dump(mode="json")
        checker = from_spec(semantic, benchmarks, models=models, base_dir=base_dir, progress=progress)
    with report_path.open("w", encoding="utf-8") as report:

        def on_hit(rec: dict[str, Any], hit: str) -> None:
            item = hit.split(" ", 1)[0]
            by_benchmark[item.split(":", 1)[0]] += 1
            report.write(
                json.dumps(
                    {
                        "id": rec["id"],
                        "method": rec["method"],
                        "benchmark_item": item,
                        "tier": "semantic" if " (semantic:" in hit else "ngram/minhash",
                        "detail": hit,
                        "question": rec["question"],
                    }
                )
                + "\n"
            )

        rows = decontaminate(
            _counting(read_records(in_path), seen),
            benchmarks=benchmarks,
            ngram=ngram,
            funnel=funnel,
            threshold=threshold,
            on_contaminated=on_hit,
            progress=progress,
            semantic=checker,
        )
        with ShardWriter(out_dir, rows_per_shard=rows_per_shard) as writer:
            buffer: list[dict[str, Any]] = []
            for rec in rows:
                kept += 1
                funnel.add(rec["method"], "kept", 1)
                buffer.append(rec)
                if len(buffer) >= 10_000:
                    writer.write(buffer)
                    buffer = []
            writer.write(buffer)
            for method, n in seen.items():
                funnel.add(method, "in", n)
            summary = {
                "rows_in": sum(seen.values()),
                "contaminated": sum(by_benchmark.values()),
                "by_benchmark": dict(by_benchmark),
                "kept": kept,
                "report": str(report_path),
                "seconds": round(time.perf_counter() - started, 2),
                "funnel": funnel.to_dict(),
            }
            writer.close(
                decontaminate={**params, **{k: v for k, v in summary.items() if k != "funnel"}},
                funnel=funnel.to_dict(),
            )
    return summary


def _summary_table(title: str, summary: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("stage", style="bold")
    keys = ["in", "duplicates", "contaminated", "kept"]
    for key in keys:
        table.add_column(key, justify="right")
    for stage, counts in summary["funnel"].items():
        table.add_row(stage, *(f"{int(counts.get(k, 0)):,}" for k in keys))
    return table


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``dedup`` and ``decontaminate`` to the ``mathaug`` app."""

    @app.command("dedup")
    def dedup_command(
        in_path: Annotated[Path, typer.Argument(metavar="IN", help="shard directory, Parquet file or JSONL")],
        out: Annotated[Path, typer.Option("--out", "-o", help="output directory")],
        threshold: Annotated[float, typer.Option(help="estimated Jaccard for near-duplicates")] = 0.8,
        against: Annotated[
            list[Path] | None,
            typer.Option("--against", help="earlier output whose rows count as kept (repeatable)"),
        ] = None,
        num_perm: Annotated[int, typer.Option(help="MinHash permutations")] = 128,
        exact: Annotated[
            bool, typer.Option("--exact/--no-exact", help="exact dedup before near dedup")
        ] = True,
        workers: Annotated[
            int | None, typer.Option(help="hashing processes (default: all cores, up to 8)")
        ] = None,
    ) -> None:
        """Remove exact and near-duplicate questions (numbers count: number variants are kept)."""
        if not 0.0 < threshold <= 1.0:
            _fail(f"--threshold must be in (0, 1], got {threshold}")
        total = _input_rows(in_path)
        try:
            with _progress() as progress:
                summary = run_dedup(
                    in_path,
                    out,
                    threshold,
                    against or (),
                    num_perm=num_perm,
                    exact=exact,
                    workers=workers,
                    progress=_reporter(progress, total),
                )
        except (FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
        out_console.print(_summary_table("dedup", summary))
        out_console.print(
            f"[green]kept {summary['kept']:,} of {summary['rows_in']:,} rows[/] "
            f"({summary['duplicates']:,} duplicates, {summary['clusters_with_duplicates']:,} clusters) "
            f"in {summary['seconds']:.1f}s → [bold]{out / 'data'}[/]"
        )

    @app.command("decontaminate")
    def decontaminate_command(
        in_path: Annotated[Path, typer.Argument(metavar="IN", help="shard directory, Parquet file or JSONL")],
        out: Annotated[Path, typer.Option("--out", "-o", help="output directory")],
        benchmark: Annotated[
            list[str] | None, typer.Option("--benchmark", help="benchmarks to check (repeatable)")
        ] = None,
        ngram: Annotated[int, typer.Option(help="shared n-gram size that flags a row")] = 13,
        threshold: Annotated[
            float, typer.Option(help="MinHash near-duplicate threshold")
        ] = DECONTAM_THRESHOLD,
        semantic: Annotated[
            bool,
            typer.Option("--semantic", help='also catch paraphrases by embedding (needs "mathaug[semantic]")'),
        ] = False,
        semantic_model: Annotated[
            str | None, typer.Option(help="sentence-transformers model id or local directory (implies --semantic)")
        ] = None,
        semantic_threshold: Annotated[
            float | None, typer.Option(help="adjusted similarity that flags a row (implies --semantic)")
        ] = None,
        benchmark_file: Annotated[
            list[str] | None,
            typer.Option(help="NAME=JSONL: a benchmark's questions for the semantic tier (repeatable)"),
        ] = None,
        recipe: Annotated[
            Path | None,
            typer.Option(help="take benchmarks, ngram and decontaminate.semantic (judge and models too) from a recipe"),
        ] = None,
    ) -> None:
        """Drop rows that overlap GSM8K test or MATH500 (13-gram overlap, MinHash near-duplicate, and with
        --semantic a paraphrase found by embedding)."""
        from pipeline.recipe import RecipeError, SemanticDecontaminateSpec, load_recipe

        models: dict[str, Any] = {}
        base_dir = None
        spec = SemanticDecontaminateSpec()
        benchmarks = tuple(benchmark or DEFAULT_BENCHMARKS)
        if recipe is not None:
            try:
                parsed = load_recipe(recipe)
            except RecipeError as exc:
                _fail(str(exc))
            models, base_dir, spec = parsed.models, parsed.base_dir, parsed.decontaminate.semantic
            benchmarks = tuple(benchmark or parsed.decontaminate.benchmarks)
            ngram = parsed.decontaminate.ngram
        updates: dict[str, Any] = {}
        if semantic or semantic_model or semantic_threshold is not None or benchmark_file:
            updates["enabled"] = True
        if semantic_model:
            updates["model"] = semantic_model
        if semantic_threshold is not None:
            updates["threshold"] = semantic_threshold
        for entry in benchmark_file or []:
            name, sep, path = entry.partition("=")
            if not sep or not name or not path:
                _fail(f"--benchmark-file: expected NAME=PATH, got {entry!r}")
            updates.setdefault("benchmark_files", dict(spec.benchmark_files))[name] = path
        try:
            spec = SemanticDecontaminateSpec.model_validate({**spec.model_dump(), **updates})
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            _fail(f"decontaminate.semantic{'.' + where if where else ''}: {err['msg'].removeprefix('Value error, ')}")
        total = _input_rows(in_path)
        try:
            with _progress() as progress:
                summary = run_decontaminate(
                    in_path,
                    out,
                    benchmarks,
                    ngram,
                    threshold=threshold,
                    progress=_reporter(progress, total),
                    semantic=spec,
                    models=models,
                    base_dir=base_dir,
                )
        except (FileNotFoundError, ValueError, TimeoutError) as exc:
            _fail(str(exc))
        out_console.print(_summary_table("decontaminate", summary))
        per = ", ".join(f"{k}: {v:,}" for k, v in sorted(summary["by_benchmark"].items())) or "none"
        out_console.print(
            f"[green]kept {summary['kept']:,} of {summary['rows_in']:,} rows[/] "
            f"({summary['contaminated']:,} contaminated: {per}; listed in {summary['report']}) "
            f"in {summary['seconds']:.1f}s → [bold]{out / 'data'}[/]"
        )
