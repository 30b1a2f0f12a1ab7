"""The Prefect flow for a recipe: the same ``pipeline.build.run_build``, with each stage batch as a task.

Only this package imports Prefect. Tasks are one per batch of (by default) a thousand rows, never one per row:
Prefect's per-task cost (a few ms with threads) then stays negligible. The batch output files are the record
of progress, so a retried or re-run task that finds its file just loads it.
"""

from __future__ import annotations

import contextvars
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from pipeline.build import BatchJob, BatchResult, BuildResult, Reporter, run_batch, run_build
from pipeline.funnel import COLUMNS
from pipeline.recipe import Recipe, load_recipe

# The CLI's progress bars live in the calling process; the flow finds them here.
_reporter: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("mathaug_reporter", default=None)


@task(
    name="stage-batch",
    task_run_name="{job.stage.stage_name}-batch-{job.index:05d}",
    retries=2,
    retry_delay_seconds=[5, 30],
    cache_policy=NO_CACHE,
    persist_result=False,
)
def stage_batch(job: BatchJob, reporter: Reporter | None = None) -> BatchResult:
    stage = job.stage.stage_name
    return run_batch(job, advance=(lambda n: reporter.advance(stage, n)) if reporter else (lambda n: None))


def _map_with_tasks(jobs: list[BatchJob], reporter: Reporter) -> list[BatchResult]:
    futures = [stage_batch.submit(job, reporter) for job in jobs]
    return [f.result() for f in futures]


def _funnel_markdown(result: BuildResult) -> str:
    rows = result.funnel.rows()
    cols = ["stage", *[c for c in COLUMNS if any(r[c] for r in rows)]]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


@flow(name="mathaug-build", flow_run_name="{recipe}", validate_parameters=False)
def build_dataset(
    recipe: str, out: str, limit: int | None = None, fresh: bool = False, skip_bad_rows: bool = False
) -> BuildResult:
    """Build (or resume) the dataset of ``recipe`` (a YAML path) into ``out``."""
    parsed: Recipe = load_recipe(recipe)
    reporter = _reporter.get() or Reporter()
    result = run_build(
        parsed,
        Path(out),
        limit=limit,
        fresh=fresh,
        skip_bad_rows=skip_bad_rows,
        reporter=reporter,
        map_batches=_map_with_tasks,
    )
    create_table_artifact(
        key="mathaug-funnel",
        table=result.funnel.rows(),
        description=f"{parsed.name}: rows per stage (in → generated → verified → deduplicated → kept)",
    )
    create_markdown_artifact(
        key="mathaug-summary",
        markdown=f"# {parsed.name}\n\n{result.rows:,} rows written to `{result.out_dir}/data` "
        f"({len(result.manifest['shards'])} shards) in {result.seconds:.1f}s.\n\n" + _funnel_markdown(result),
    )
    return result


def build_with_flow(
    recipe: str | Path,
    out: Path,
    *,
    limit: int | None = None,
    fresh: bool = False,
    skip_bad_rows: bool = False,
    reporter: Reporter | None = None,
) -> BuildResult:
    """Run the flow in this process (a temporary local Prefect server unless PREFECT_API_URL is set)."""
    token = _reporter.set(reporter)
    try:
        return build_dataset(str(recipe), str(out), limit=limit, fresh=fresh, skip_bad_rows=skip_bad_rows)
    finally:
        _reporter.reset(token)
