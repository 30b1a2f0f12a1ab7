"""Scheduled builds: serve the build flow as a deployment on a cron or an interval.

``mathaug deploy`` registers a deployment of ``build_dataset`` whose parameters (recipe, out, limit, ...) are
editable in the UI's run form, then serves it from this process: each scheduled or manual run executes in a
subprocess here. For a long-lived setup use work pools instead (``prefect.yaml`` + ``prefect worker start``).
Either way the runs are the same flow ``mathaug build`` runs.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Interval, Schedule

from flows.build import build_dataset
from pipeline.recipe import load_recipe, resolve_recipe_path


class DeployError(ValueError):
    pass


def default_out(recipe: Path) -> str:
    """One directory per day: a nightly run writes a new dataset; a rerun the same day resumes it."""
    return str(Path("out") / recipe.stem / "{date}")


def make_schedule(cron: str | None, interval: float | None, timezone: str | None) -> Schedule:
    if bool(cron) == bool(interval):
        raise DeployError("give exactly one of --cron (e.g. '0 2 * * *') or --interval SECONDS")
    if cron:
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=cron, timezone=timezone)
        except ValueError as exc:
            raise DeployError(
                f"--cron {cron!r} / --timezone {timezone!r}: not a valid schedule "
                "(e.g. '0 2 * * *' = 02:00 daily, timezone like Europe/Paris)"
            ) from exc
        return Cron(cron, timezone=timezone)
    if interval is None or interval <= 0:
        raise DeployError("--interval must be a positive number of seconds")
    return Interval(timedelta(seconds=interval), timezone=timezone)


def make_deployment(
    recipe: Path,
    name: str,
    *,
    cron: str | None = None,
    interval: float | None = None,
    timezone: str | None = None,
    out: str | None = None,
    limit: int | None = None,
) -> RunnerDeployment:
    """The deployment of the build flow for ``recipe`` (validated now: a typo fails here, not at 2 a.m.)."""
    recipe = resolve_recipe_path(recipe).resolve()
    parsed = load_recipe(recipe)  # raises RecipeError with file:line
    # absolute, so runs do not depend on where the server or worker starts them ({date} is kept as is)
    out_value = str(Path(out or default_out(recipe)).expanduser().absolute())
    parameters: dict[str, Any] = {"recipe": str(recipe), "out": out_value, "limit": limit}
    return build_dataset.to_deployment(
        name=name,
        schedules=[make_schedule(cron, interval, timezone)],
        parameters=parameters,
        description=f"mathaug build of recipe {parsed.name!r} ({recipe}) into {out_value}. "
        + (parsed.description.strip() if parsed.description else ""),
        tags=["mathaug", parsed.name],
        concurrency_limit=1,  # two runs into one output directory would race on its files
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def serve_deployment(deployment: RunnerDeployment, limit: int | None = None) -> None:
    """Register and serve until interrupted (Ctrl-C pauses the schedule)."""
    from prefect import serve

    serve(deployment, limit=limit)
