"""Rounds in the Prefect flow: a table artifact per finished round, and the pause for a round's input.

When a round needs an input (``pipeline.stage_runner``: e.g. LLM2LLM's student trained on the rounds so far), the
flow pauses with a run-input form (``pause_flow_run(wait_for_input=...)``): the UI's "Resume" button asks for the
value; ``mathaug resume OUT --student PATH`` sends it through the API. Where the paused run is (flow run id and
API URL) is written to ``OUT/.mathaug/paused.json`` for the command. A build without Prefect (``--direct``) stops
instead (``RoundPaused``) and ``mathaug resume`` records the input and runs the build again: finished rounds are
loaded from disk, never recomputed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.io.rundir import WORK_DIR
from pipeline.io.shards import atomic_write_bytes

PAUSED_FILE = "paused.json"  # a flow run waiting for a round input (written by the flow)
STOPPED_FILE = "round_pause.json"  # a build without Prefect that stopped for one (written by the CLI)
# How long a paused flow waits for the input (a student can take days to train), and how often it looks.
PAUSE_TIMEOUT_S = int(os.environ.get("MATHAUG_PAUSE_TIMEOUT_S", 14 * 24 * 3600))
PAUSE_POLL_S = int(os.environ.get("MATHAUG_PAUSE_POLL_S", 5))
ROUNDS_KEY = "mathaug-rounds"


def _field(need: dict[str, Any], needs: list[dict[str, Any]]) -> str:
    """The form field of a need: its role (``student``) unless two needs share it."""
    if sum(n["role"] == need["role"] for n in needs) == 1:
        return need["role"]
    return re.sub(r"\W", "_", f"{need['stage']}_{need['role']}")


def round_input_form(needs: list[dict[str, Any]]) -> Any:
    """A ``RunInput`` with one text field per need: what the Prefect UI shows on "Resume"."""
    from prefect.input import RunInput
    from pydantic import Field, create_model

    fields: dict[str, Any] = {
        _field(n, needs): (str, Field(description=f"{n['stage']}, round {n['round']}: {n['prompt']} "
                                                  f"(its training set: {n['dataset']}, {n['rows']} rows)"))
        for n in needs
    }
    return create_model("RoundInputForm", __base__=RunInput, **fields)


def round_hook(out_dir: Path, reporter: Any) -> Any:
    """``on_round`` for ``run_build`` inside the flow: the rounds table artifact, then the pause when needed."""
    history: dict[str, list[dict[str, Any]]] = {}

    def on_round(group: str, number: int, entry: dict[str, Any]) -> dict[str, str] | None:
        from prefect import get_run_logger
        from prefect.artifacts import create_table_artifact

        from pipeline.io.card import rounds_table

        history.setdefault(group, []).append(entry)
        create_table_artifact(key=ROUNDS_KEY, table=rounds_table(history),
                              description=f"rounds so far (latest: {group} round {number})")
        needs = entry.get("needs") or []
        if not needs:
            return None
        return wait_for_inputs(out_dir, group, number, needs, get_run_logger(), reporter)

    return on_round


def wait_for_inputs(
    out_dir: Path, group: str, number: int, needs: list[dict[str, Any]], logger: Any, reporter: Any
) -> dict[str, str]:
    """Pause the flow run until the round inputs are given (UI form or ``mathaug resume``); their values."""
    from prefect.flow_runs import pause_flow_run
    from prefect.runtime import flow_run
    from prefect.settings import get_current_settings

    form = round_input_form(needs)
    paused = Path(out_dir) / WORK_DIR / PAUSED_FILE
    atomic_write_bytes(paused, json.dumps({"flow_run_id": str(flow_run.id), "api_url": get_current_settings().api.url,
                                           "group": group, "round": number, "needs": needs}, indent=1).encode())
    options = " ".join(f"--{n['role']} PATH" if n["role"] == "student" else f"--input {n['stage']}.{n['role']}=VALUE"
                       for n in needs)
    text = (f"{group}: round {number} is written; the flow is paused until round {number + 1} gets "
            + "; ".join(f"{n['stage']}'s {n['role']} ({n['prompt']}; train it on {n['dataset']}, {n['rows']} rows)"
                        for n in needs)
            + f". Give it in the Prefect UI (Resume on flow run {flow_run.id}) or run: mathaug resume {out_dir} "
            + options)
    logger.info(text)
    reporter.message(text)
    try:
        given = pause_flow_run(wait_for_input=form, timeout=PAUSE_TIMEOUT_S, poll_interval=PAUSE_POLL_S,
                               key=f"{group}-r{number}")
    finally:
        paused.unlink(missing_ok=True)
    values = {n["key"]: str(getattr(given, _field(n, needs))).strip() for n in needs}
    logger.info("resumed with %s", values)
    return values


# ------------------------------------------------------------------------------------------------ mathaug resume


def register(app: typer.Typer) -> None:
    app.command()(resume)


def _inputs(needs: list[dict[str, Any]], student: str | None, given: list[str]) -> dict[str, str]:
    """``need key -> value`` from ``--student`` and ``--input stage.role=VALUE``; every need must be covered."""
    pairs = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep or "." not in name:
            raise ValueError(f"--input {item!r}: write STAGE.ROLE=VALUE")
        pairs[name.strip()] = value.strip()
    values = {}
    for need in needs:
        value = pairs.get(f"{need['stage']}.{need['role']}")
        if value is None and need["role"] == "student":
            value = student
        if not value:
            raise ValueError(f"round {need['round']} of {need['stage']} needs its {need['role']}: "
                             + ("--student PATH" if need["role"] == "student"
                                else f"--input {need['stage']}.{need['role']}=VALUE"))
        values[need["key"]] = value
    return values


def resume(
    out: Annotated[Path, typer.Argument(help="the output directory of a build waiting for a round input")],
    student: Annotated[
        str | None, typer.Option(help="the next student: a model path (vllm) or a served name (openai)")
    ] = None,
    input_: Annotated[
        list[str], typer.Option("--input", help="another round input, STAGE.ROLE=VALUE (repeatable)")
    ] = [],  # noqa: B006 - typer's way of a repeatable option
) -> None:
    """Give a paused build the next round's input (e.g. the student trained on OUT's round set) and go on."""
    from pipeline.cli import console, fail

    work = out / WORK_DIR
    paused, stopped = work / PAUSED_FILE, work / STOPPED_FILE
    if paused.exists():
        state = json.loads(paused.read_text())
        try:
            values = _inputs(state["needs"], student, input_)
        except ValueError as exc:
            fail(str(exc))
        if _resume_flow_run(state, values):
            console.print(f"resumed flow run {state['flow_run_id']} with {values}", highlight=False)
            return
        console.print(f"flow run {state['flow_run_id']} is not waiting any more (its process ended): "
                      "recording the input and running the build again", highlight=False)
        needs = state["needs"]
    elif stopped.exists():
        needs = json.loads(stopped.read_text())["needs"]
    else:
        fail(f"{out}: no build is waiting for a round input ({paused} and {stopped} are absent)")
    try:
        values = _inputs(needs, student, input_)
    except ValueError as exc:
        fail(str(exc))
    _rebuild(out, values)


def _resume_flow_run(state: dict[str, Any], values: dict[str, str]) -> bool:
    """Resume the paused flow run through the API with the form's values; False when it is not paused (any more)."""
    from uuid import UUID

    import httpx
    from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    fields = {_field(n, state["needs"]): values[n["key"]] for n in state["needs"]}
    try:
        with temporary_settings(updates={PREFECT_API_URL: state["api_url"]}):
            resume_flow_run(UUID(state["flow_run_id"]), run_input=fields)
    except (httpx.HTTPError, OSError, NotPausedError, FlowPauseTimeout, ObjectNotFound):
        return False
    return True


def _rebuild(out: Path, values: dict[str, str]) -> None:
    """Record the inputs and run the stopped build again, as it was started (recipe, limit, --direct)."""
    from pipeline.cli import build, console
    from pipeline.stage_runner import record_round_inputs

    stopped = out / WORK_DIR / STOPPED_FILE
    record_round_inputs(out / WORK_DIR, values)
    if not stopped.exists():  # a flow run that paused and died: its command line is the user's
        console.print(f"recorded {values}; run your `mathaug build RECIPE -o {out}` again: it loads the finished "
                      "rounds and goes on with the next one", highlight=False)
        return
    how = json.loads(stopped.read_text())
    stopped.unlink()
    build(recipe=Path(how["recipe"]), out=out, limit=how.get("limit"), fresh=False, resume=True,
          skip_bad_rows=how.get("skip_bad_rows", False), direct=how.get("direct", True))


def record_stop(out: Path, recipe: Path, limit: int | None, skip_bad_rows: bool, direct: bool,
                needs: list[dict[str, Any]]) -> None:
    """What ``mathaug resume`` needs to run a stopped build again (written by ``mathaug build``)."""
    atomic_write_bytes(Path(out) / WORK_DIR / STOPPED_FILE, json.dumps(
        {"recipe": str(Path(recipe).resolve()), "limit": limit, "skip_bad_rows": skip_bad_rows, "direct": direct,
         "needs": needs}, indent=1).encode())
