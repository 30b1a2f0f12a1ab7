"""Running a recipe's stages: sources read batch by batch from files, rounds, and model lifecycle.

- **Sources**: the seeds are written once to ``OUT/.mathaug/seeds/``; every stage reads its ``from:`` sources from
  files (the seeds file, earlier stages' batch files), so peak memory does not grow with the rows a stage reads.
- **Rounds**: a ``rounds:`` group repeats its stages up to ``max_rounds`` times or until a condition holds (a
  round made no row, or a round metric reached a bound). Inside a group, ``from: [X]`` reads X's rows of every
  round so far and ``X@last`` those of the latest round only. Each round's batches live in their own folder and
  its key includes the round, so a build killed in round 2 resumes in round 2.
- **Round models**: a stage's ``round_roles`` can give a role another model per round (a list of checkpoints)
  or ask for one (``RoundInput``: e.g. the student trained on the rounds so far). A missing input is asked of the
  ``on_round`` hook (the Prefect flow pauses for it); without an answer the build stops with ``RoundPaused``
  after writing the next round's input set, and ``mathaug resume OUT --student PATH`` gives it. Given inputs
  live in ``OUT/.mathaug/round_inputs.json``, so a resumed build maps every round as before and recomputes
  nothing.
- **Model lifecycle**: before a stage runs, in-process engines of models it does not use are released (unless
  ``keep_loaded``), so a student and a teacher can take turns on one GPU.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.batches import (
    BatchResult,
    MapBatches,
    close_model_pools,
    iter_rows,
    plan_stage,
    release_models_except,
)
from pipeline.funnel import Funnel
from pipeline.io.rundir import BuildError
from pipeline.io.shards import atomic_write_bytes, atomic_write_table
from pipeline.recipe import Recipe, RoundsSpec, StageSpec
from pipeline.records import to_table
from pipeline.stages import RoundInput, get_stage

SEEDS_DIR = "seeds"
ROUND_INPUTS_FILE = "round_inputs.json"
ROUNDS_DIR = "rounds"


@dataclass
class StageOutputs:
    """Batch files per stage and round (round 0 = outside rounds), and what the rounds did."""

    seeds: list[Path] = field(default_factory=list)
    files: dict[str, dict[int, list[Path]]] = field(default_factory=dict)
    rounds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    resumed: int = 0
    computed: int = 0

    def paths(self, stage: str) -> list[Path]:
        """Every batch file of ``stage``, rounds in order."""
        by_round = self.files.get(stage, {})
        return [p for r in sorted(by_round) for p in by_round[r]]

    def latest(self, stage: str) -> list[Path]:
        by_round = self.files.get(stage, {})
        return by_round[max(by_round)] if by_round else []


def write_seed_files(seeds: list[dict[str, Any]], work_dir: Path, batch_size: int) -> list[Path]:
    """The seeds as Parquet files (stages read their inputs from files); rewritten each run, same content."""
    folder = work_dir / SEEDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, start in enumerate(range(0, max(len(seeds), 1), batch_size)):
        path = folder / f"{i:05d}.parquet"
        atomic_write_table(path, to_table(seeds[start : start + batch_size]))
        paths.append(path)
    for stale in folder.glob("*.parquet"):
        if stale not in paths:
            stale.unlink()
    return paths


def _sources(stage: StageSpec, outputs: StageOutputs, round: int | None) -> list[Path]:
    names = stage.from_first_round if round == 1 and stage.from_first_round is not None else stage.from_
    paths: list[Path] = []
    for src in names:
        base, _, suffix = src.partition("@")
        if base == "seeds":
            paths.extend(outputs.seeds)
        elif suffix == "last":
            paths.extend(outputs.latest(base))
        else:
            paths.extend(outputs.paths(base))
    return paths


def round_metric(round_funnel: Funnel, metric: str) -> float | None:
    """``stage.key`` of one round's funnel; ``stage.a/b`` is the ratio of two of its counters."""
    stage, _, key = metric.partition(".")
    if "/" in key:
        num, den = key.split("/", 1)
        d = round_funnel.get(stage, den)
        return round_funnel.get(stage, num) / d if d else None
    return round_funnel.get(stage, key) if stage in round_funnel.stages() else None


def should_stop(spec: RoundsSpec, round_funnel: Funnel, made: int) -> str | None:
    """Why the group stops after this round (None: go on)."""
    until = spec.until
    if until.no_new_rows and made == 0:
        return "no new rows"
    if until.metric:
        value = round_metric(round_funnel, until.metric)
        if value is not None and until.at_least is not None and value >= until.at_least:
            return f"{until.metric} = {value:.4g} >= {until.at_least:g}"
        if value is not None and until.at_most is not None and value <= until.at_most:
            return f"{until.metric} = {value:.4g} <= {until.at_most:g}"
    return None


# on_round(group, round, entry) -> None, or the inputs the next round needs ({"stage.role": value}) when
# entry["needs"] lists some (the Prefect flow pauses and asks for them)
RoundHook = Callable[[str, int, dict[str, Any]], "dict[str, str] | None"]


class RoundPaused(BuildError):
    """The next round needs an input nobody gave yet (e.g. the student trained on the rounds so far): the rounds
    so far are on disk and the next round's input set is written; ``needs`` says what to give."""

    def __init__(self, message: str, needs: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.needs = needs


def read_round_inputs(work_dir: Path) -> dict[str, str]:
    """Inputs given for rounds so far: ``"stage.role@round"`` -> value."""
    path = Path(work_dir) / ROUND_INPUTS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def input_key(stage: str, role: str, round: int) -> str:
    return f"{stage}.{role}@{round}"


def record_round_inputs(work_dir: Path, given: dict[str, str]) -> None:
    """Store inputs (``"stage.role@round"`` -> value) for this and later runs of the build."""
    inputs = {**read_round_inputs(work_dir), **given}
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(work_dir) / ROUND_INPUTS_FILE, json.dumps(inputs, indent=1, sort_keys=True).encode())


def round_models(
    stage: StageSpec, models: dict[str, Any], round: int | None, inputs: dict[str, str]
) -> tuple[dict[str, str], dict[str, Any], list[dict[str, Any]]]:
    """The round's role -> model mapping, the models (given ones added under ``<model>@<stage>-r<round>``), and
    the inputs still missing (``{"key", "stage", "role", "round", "prompt"}``)."""
    roles = stage.role_models(models) if models else {}
    models = dict(models)
    chooser = get_stage(stage.method).round_roles
    missing: list[dict[str, Any]] = []
    if round is None or chooser is None:
        return roles, models, missing
    for role, choice in chooser(stage.parsed_params(), round).items():
        if isinstance(choice, RoundInput):
            key = input_key(stage.stage_name, role, round)
            if key not in inputs:
                missing.append({"key": key, "stage": stage.stage_name, "role": role, "round": round,
                                "prompt": choice.prompt})
                continue
            name = f"{roles[role]}@{stage.stage_name}-r{round}"
            models[name] = models[roles[role]].model_copy(update={"model": inputs[key]})
            roles[role] = name
        elif choice in models:
            roles[role] = choice
        else:
            raise BuildError(f"{stage.stage_name}: round {round}'s {role} {choice!r} is not under the recipe's models:")
    return roles, models, missing


def _write_round_set(paths: list[Path], target: Path) -> int:
    """The rows a round will read, as JSONL a trainer loads (``datasets.load_dataset("json", ...)``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    columns = ["id", "method", "round", "question", "solution", "answer", "parent_ids"]
    lines = [json.dumps(row, ensure_ascii=False) for row in iter_rows(paths, columns=columns)]
    atomic_write_bytes(target, ("\n".join(lines) + "\n").encode() if lines else b"")
    return len(lines)


def run_stages(
    recipe: Recipe,
    seed_files: list[Path],
    *,
    run_id: str,
    work_dir: Path,
    funnel: Funnel,
    reporter: Any,
    map_batches: MapBatches,
    on_round: RoundHook | None = None,
) -> StageOutputs:
    """Every stage of the recipe, in order, rounds repeated; returns where their rows are."""
    outputs = StageOutputs(seeds=list(seed_files))

    def run_one(stage: StageSpec, round: int | None, used: dict[str, Any] | None = None) -> list[BatchResult]:
        roles, models, _ = round_models(stage, recipe.models, round, read_round_inputs(work_dir))
        if used is not None:
            used[stage.stage_name] = {role: getattr(models[name], "model", name) for role, name in roles.items()}
        for name in release_models_except(set(roles.values())):
            reporter.message(f"released the in-process engine of model {name!r} (not used by {stage.stage_name})")
        stage_dir = work_dir / "stages" / stage.stage_name / (f"r{round}" if round else "")
        jobs = plan_stage(stage, _sources(stage, outputs, round), stage_dir=stage_dir, run_id=run_id,
                          seed=recipe.seed, work_dir=work_dir, batch_size=recipe.batch_size,
                          models=models, round=round, roles=roles)
        if round:
            reporter.message(f"{stage.stage_name}: round {round}")
        reporter.stage_started(stage.stage_name, sum(job.size for job in jobs))
        results = sorted(map_batches(jobs, reporter), key=lambda r: r.index)
        reporter.stage_finished(stage.stage_name)
        outputs.files.setdefault(stage.stage_name, {})[round or 0] = [r.path for r in results]
        for res in results:
            funnel.merge(res.funnel)
            outputs.resumed += res.cached
            outputs.computed += not res.cached
        return results

    def _next_round_needs(stages: Sequence[StageSpec], number: int) -> list[dict[str, Any]]:
        """Inputs round ``number`` lacks, each with the file of the rows that round will read (to train on)."""
        needs = []
        for stage in stages:
            for need in round_models(stage, recipe.models, number, read_round_inputs(work_dir))[2]:
                target = work_dir / ROUNDS_DIR / stage.stage_name / f"input-r{number}.jsonl"
                rows = _write_round_set(_sources(stage, outputs, number), target)
                needs.append({**need, "dataset": str(target), "rows": rows})
        return needs

    try:
        for group, members in itertools.groupby(recipe.stages, key=lambda s: s.group):
            stages: Sequence[StageSpec] = list(members)
            if group is None:
                for stage in stages:
                    run_one(stage, None)
                continue
            spec = recipe.rounds[group]
            history = outputs.rounds.setdefault(group, [])
            for number in range(1, spec.max_rounds + 1):
                round_funnel = Funnel()
                made = 0
                used: dict[str, Any] = {}
                for stage in stages:
                    for res in run_one(stage, number, used):
                        round_funnel.merge(res.funnel)
                        made += res.rows
                stop = should_stop(spec, round_funnel, made) if number < spec.max_rounds else "max_rounds"
                entry = {"round": number, "rows": made, "funnel": round_funnel.to_dict(), "stopped": stop,
                         "models": used}
                history.append(entry)
                reporter.message(f"{group}: round {number} made {made} rows" + (f"; stop: {stop}" if stop else ""))
                needs = [] if stop else _next_round_needs(stages, number + 1)
                if needs:
                    entry["needs"] = needs
                given = on_round(group, number, entry) if on_round is not None else None
                if needs:
                    if given:
                        record_round_inputs(work_dir, {k: str(v) for k, v in given.items()})
                    _stop_unless_given(group, number, needs, work_dir)
                if stop:
                    break
    finally:
        close_model_pools()
    return outputs


def _stop_unless_given(group: str, number: int, needs: list[dict[str, Any]], work_dir: Path) -> None:
    """Raise ``RoundPaused`` with the exact command to run next when an input of round ``number + 1`` is missing."""
    missing = [n for n in needs if n["key"] not in read_round_inputs(work_dir)]
    if not missing:
        return
    out = Path(work_dir).parent
    options = " ".join(
        f"--{n['role']} PATH_OR_SERVED_NAME" if n["role"] == "student" else f"--input {n['stage']}.{n['role']}=VALUE"
        for n in missing
    )
    what = "; ".join(f"{n['stage']} needs its {n['role']} ({n['prompt']}); its input set: {n['dataset']} "
                     f"({n['rows']} rows)" for n in missing)
    raise RoundPaused(
        f"{group}: round {number} is done and written; round {number + 1} waits: {what}. "
        f"Then run: mathaug resume {out} {options}",
        missing,
    )
