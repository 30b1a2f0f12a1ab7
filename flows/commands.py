"""``mathaug deploy``: serve a recipe's build as a scheduled Prefect deployment (registered by pipeline.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command()(deploy)


def deploy(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML")],
    name: Annotated[str, typer.Option("--name", "-n", help="deployment name (shown in the UI)")],
    cron: Annotated[str | None, typer.Option(help="cron schedule, e.g. '0 2 * * *' (02:00 daily)")] = None,
    interval: Annotated[float | None, typer.Option(help="run every N seconds instead of a cron")] = None,
    timezone: Annotated[
        str | None, typer.Option(help="timezone of the cron, e.g. Europe/Paris (default UTC)")
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(help="output directory; {date} becomes the run's date [default: out/RECIPE/{date}]"),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="use only the first N seed rows")] = None,
) -> None:
    """Serve RECIPE's build on a schedule; runs (and manual runs from the UI's form) execute here until Ctrl-C."""
    from prefect.settings import get_current_settings

    from flows.deploy import DeployError, make_deployment, serve_deployment
    from pipeline.cli import console, fail
    from pipeline.recipe import RecipeError

    api = get_current_settings().api.url
    if not api:
        fail(
            "no Prefect server configured: a schedule needs a server that outlives this command. Start one "
            "(`prefect server start`, or `docker compose up -d prefect-server`) and point at it with "
            "`prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api` (or export PREFECT_API_URL)."
        )
    try:
        deployment = make_deployment(
            recipe, name, cron=cron, interval=interval, timezone=timezone, out=out, limit=limit
        )
    except (RecipeError, DeployError) as exc:
        fail(str(exc))
    console.print(
        f"serving [bold]mathaug-build/{name}[/] against {api}: parameters {deployment.parameters}; "
        "Ctrl-C stops serving (and pauses the schedule)",
        highlight=False,
    )
    serve_deployment(deployment)
