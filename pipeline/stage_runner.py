"""Running a recipe's stages: sources read batch by batch from files, rounds, and model lifecycle.

- **Sources**: the seeds are written once to ``OUT/.mathaug/seeds/``; every stage reads its ``from:`` sources from
  files (the seeds file, earlier stages' batch files), so peak memory does not grow with the rows a stage reads.
- **Rounds**: a ``rounds:`` group repeats its stages up to ``max_rounds`` times or until a condition holds (a
  round made no row, or a round metric reached a bound). Inside a group, ``from: [X]`` reads X's rows of every
  round so far and ``X@last`` those of the latest round only. Each round's batches live in their own folder and
  its key includes the round, so a build killed in round 2 resumes in round 2.
- **Model lifecycle**: before a stage runs, in-process engines of models it does not use are released (unless
  ``keep_loaded``), so a student and a teacher can take turns on one GPU.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.batches import (
    BatchResult,
    MapBatches,
    close_model_pools,
    plan_stage,
    release_models_except,
)
from pipeline.funnel import Funnel
from pipeline.io.shards import atomic_write_table
from pipeline.recipe import Recipe, RoundsSpec, StageSpec
from pipeline.records import to_table

SEEDS_DIR = "seeds"


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


RoundHook = Callable[[str, int, dict[str, Any]], None]


def run_stages(
    recipe: Recipe,
    seeds: list[dict[str, Any]],
    *,
    run_id: str,
    work_dir: Path,
    funnel: Funnel,
    reporter: Any,
    map_batches: MapBatches,
    on_round: RoundHook | None = None,
) -> StageOutputs:
    """Every stage of the recipe, in order, rounds repeated; returns where their rows are."""
    outputs = StageOutputs(seeds=write_seed_files(seeds, work_dir, recipe.batch_size))

    def run_one(stage: StageSpec, round: int | None) -> list[BatchResult]:
        keep = set(stage.role_models(recipe.models).values()) if recipe.models else set()
        for name in release_models_except(keep):
            reporter.message(f"released the in-process engine of model {name!r} (not used by {stage.stage_name})")
        stage_dir = work_dir / "stages" / stage.stage_name / (f"r{round}" if round else "")
        jobs = plan_stage(stage, _sources(stage, outputs, round), stage_dir=stage_dir, run_id=run_id,
                          seed=recipe.seed, work_dir=work_dir, batch_size=recipe.batch_size,
                          models=recipe.models, round=round)
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
                for stage in stages:
                    for res in run_one(stage, number):
                        round_funnel.merge(res.funnel)
                        made += res.rows
                stop = should_stop(spec, round_funnel, made) if number < spec.max_rounds else "max_rounds"
                entry = {"round": number, "rows": made, "funnel": round_funnel.to_dict(), "stopped": stop}
                history.append(entry)
                reporter.message(f"{group}: round {number} made {made} rows" + (f"; stop: {stop}" if stop else ""))
                if on_round is not None:
                    on_round(group, number, entry)
                if stop:
                    break
    finally:
        close_model_pools()
    return outputs
