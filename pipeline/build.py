"""The build: seeds → stages (in batches, each batch saved atomically) → verify → dedup → decontaminate → shards.

This module is plain Python. ``flows/`` runs the same ``run_build`` with a ``map_batches`` that turns each batch
into a Prefect task; the CLI and tests can call it directly. The files under ``OUT/.mathaug/`` are the record of
progress: a batch whose output file exists is never computed again, so a killed build resumes where it stopped
and produces the same rows with the same ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline import __version__
from pipeline.batches import (  # noqa: F401 - re-exported: flows and tests import the batch API from here
    BatchJob,
    BatchResult,
    MapBatches,
    batch_key,
    close_model_pools,
    iter_rows,
    map_sequential,
    model_pool,
    plan_stage,
    read_batch,
    rejected_path,
    run_batch,
)
from pipeline.funnel import Funnel
from pipeline.io.card import render_card
from pipeline.io.dropped import DroppedWriter
from pipeline.io.publish import Generation
from pipeline.io.rundir import (  # noqa: F401 - re-exported: the run directory's API lived here
    STATE_FILE,
    BuildError,
    IncompatibleRunError,
    RunState,
    check_run_dir,
    prepare_run,
    publish_card,
    release_run_lock,
    remove_stray_temp_files,
)
from pipeline.io.seeds import LoadReport, load_seeds
from pipeline.io.shards import ShardWriter
from pipeline.paths import ROOT
from pipeline.recipe import Recipe, StageSpec
from pipeline.records import VERIFIED_STATUSES
from pipeline.stage_runner import StageOutputs, run_stages, write_seed_files
from pipeline.stages import get_stage

# ------------------------------------------------------------------------------------------------ progress


class Reporter:
    """Progress sink: the CLI draws rich bars, the Prefect flow updates a progress artifact."""

    def stage_started(self, stage: str, total: int) -> None: ...

    def advance(self, stage: str, n: int = 1) -> None: ...

    def stage_finished(self, stage: str) -> None: ...

    def message(self, text: str) -> None: ...


# ------------------------------------------------------------------------------------------------ seeds


def seed_base_dirs(recipe: Recipe) -> list[Path]:
    """Relative seed paths resolve against the working directory, then the recipe's folder, then the repo."""
    dirs = [Path.cwd()]
    if recipe.base_dir:
        dirs.append(recipe.base_dir)
    dirs.append(ROOT)
    return dirs


def load_seed_records(
    recipe: Recipe, limit: int | None = None, skip_bad_rows: bool = False, report: LoadReport | None = None
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for spec in recipe.seeds:
        base = next(
            (d for d in seed_base_dirs(recipe) if spec.path and (d / spec.path).exists()),
            recipe.base_dir or Path.cwd(),
        )
        records.extend(load_seeds(spec, base_dir=base, skip_bad_rows=skip_bad_rows, report=report))
    seen: set[str] = set()
    unique = [r for r in records if not (r["id"] in seen or seen.add(r["id"]))]  # identical seed rows once
    return unique[:limit] if limit else unique


# ------------------------------------------------------------------------------------------------ keep rules


def verify_records(
    records: Iterable[dict[str, Any]],
    consistency: bool,
    keep_failed: bool,
    funnel: Funnel,
    on_dropped: Callable[[dict[str, Any], str], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Re-check each row's final answer against its solution; drop (or mark) rows that fail.

    Stages verify what they make (recomputation, majority vote, executed code); this gate catches the rest: a
    solution whose own final answer disagrees with the row's ``answer`` never reaches the dataset.
    """
    from pipeline.verify import answers_match, extract_answer

    for rec in records:
        ver = dict(rec.get("verification") or {})
        status = ver.get("status") or "unverified"
        solution, answer = rec.get("solution"), rec.get("answer")
        if consistency and status in VERIFIED_STATUSES and solution and answer:
            extracted = extract_answer(solution)
            if extracted is None or not answers_match(extracted, answer):
                status = "failed"
                ver["detail"] = f"solution's final answer {extracted!r} does not match answer {answer!r}"
        elif status not in VERIFIED_STATUSES and status != "failed" and solution and answer:
            extracted = extract_answer(solution)
            if extracted is not None and answers_match(extracted, answer):
                status, ver["method"] = "verified", "extract+match"
            else:
                status = "failed"
        ver["status"] = status
        rec["verification"] = ver
        if status in VERIFIED_STATUSES:
            funnel.add(rec["method"], "verified")
        else:
            funnel.add(rec["method"], "failed")
            if not keep_failed:
                if on_dropped is not None:
                    on_dropped(rec, ver.get("detail") or f"no final answer in the solution matches {answer!r}")
                continue
        yield rec


def _count_kept(records: Iterable[dict[str, Any]], funnel: Funnel) -> Iterator[dict[str, Any]]:
    for rec in records:
        funnel.add(rec["method"], "kept")
        yield rec


def _written_stages(recipe: Recipe) -> list[StageSpec]:
    """Stages whose rows go to the dataset (not the ``intermediate`` ones other stages consume)."""
    return [s for s in recipe.stages if get_stage(s.method).output != "intermediate"]


def _replaced_ids(recipe: Recipe, outputs: StageOutputs) -> dict[str, str]:
    """Rows that a ``replace`` stage replaced: parent id -> the id of the row that took its place."""
    replaced: dict[str, str] = {}
    for stage in recipe.stages:
        if get_stage(stage.method).output == "replace":
            for row in iter_rows(outputs.paths(stage.stage_name), columns=["id", "parent_ids"]):
                if row["parent_ids"]:
                    replaced.setdefault(row["parent_ids"][0], row["id"])
    return replaced


def _rejected_candidates(recipe: Recipe, outputs: StageOutputs) -> Iterator[tuple[str, dict[str, Any]]]:
    """(stage, candidate) for every candidate a stage threw away and kept for the dropped table."""
    for stage in recipe.stages:
        for path in outputs.paths(stage.stage_name):
            rejected = rejected_path(path)
            if rejected.exists():
                for row in iter_rows([rejected]):
                    yield stage.stage_name, row


def _drop_replaced(
    records: Iterable[dict[str, Any]],
    replaced: dict[str, str],
    funnel: Funnel,
    on_dropped: Callable[[dict[str, Any], str, str], None] | None,
) -> Iterator[dict[str, Any]]:
    for rec in records:
        new = replaced.get(rec["id"])
        if new is None:
            yield rec
            continue
        funnel.add(rec["method"], "replaced")
        if on_dropped is not None:
            on_dropped(rec, "replaced by a better solution of the same question", new)


def _finalize(
    records: Iterable[dict[str, Any]], strip: bool, rounds: Funnel, methods: dict[str, int]
) -> Iterator[dict[str, Any]]:
    """The written view of each kept row (calculator annotations out of the SFT text), counted per round and per
    verification method."""
    from pipeline.records import sft_view

    for rec in records:
        if rec.get("round") is not None:
            rounds.add(f"{rec['method']}@r{rec['round']}", "kept")
        how = (rec.get("verification") or {}).get("method") or "none"
        methods[how] = methods.get(how, 0) + 1
        yield sft_view(rec, strip)


def _rounds_summary(outputs: StageOutputs, kept: Funnel) -> dict[str, list[dict[str, Any]]]:
    """Per rounds group, per round: rows made, the round's stage counters, rows kept, why the group stopped."""
    summary = {}
    for group, history in outputs.rounds.items():
        summary[group] = [
            {**entry, "kept": int(sum(kept.get(f"{stage}@r{entry['round']}", "kept") for stage in entry["funnel"]))}
            for entry in history
        ]
    return summary


# ------------------------------------------------------------------------------------------------ the build


@dataclass
class BuildResult:
    out_dir: Path
    run_id: str
    rows: int
    funnel: Funnel
    manifest: dict[str, Any]
    seconds: float
    resumed_batches: int = 0
    computed_batches: int = 0
    seed_report: LoadReport = field(default_factory=LoadReport)


def run_build(
    recipe: Recipe,
    out_dir: Path,
    *,
    limit: int | None = None,
    fresh: bool = False,
    skip_bad_rows: bool = False,
    reporter: Reporter | None = None,
    map_batches: MapBatches = map_sequential,
    resume: bool = True,
    on_round: Callable[[str, int, dict[str, Any]], None] | None = None,
) -> BuildResult:
    """Run (or resume) a whole build and write the dataset. Returns the funnel and manifest.

    ``on_round(group, round, summary)`` is told of each finished round of a ``rounds:`` group.
    """
    started = time.perf_counter()
    reporter = reporter or Reporter()
    funnel = Funnel()

    report = LoadReport()
    seeds = load_seed_records(recipe, limit=limit, skip_bad_rows=skip_bad_rows, report=report)
    # after the seeds load: a bad seed file leaves no run state behind. Holds the directory's lock until the end.
    state = prepare_run(recipe, out_dir, limit=limit, fresh=fresh, resume=resume)
    for rec in seeds:  # seeds are rebuilt on resume: stamp them with the run's, not today's, time
        rec["run_id"], rec["created_at"] = state.run_id, state.created_at
    funnel.add("seed", "in", len(seeds))
    funnel.add("seed", "generated", len(seeds))
    if report.skipped:
        funnel.reject("seed", "bad_row", report.skipped)
        reporter.message(f"skipped {report.skipped} bad seed rows (first: {report.errors[0]})")

    seed_files = write_seed_files(seeds, state.work_dir, recipe.batch_size)
    n_seeds = len(seeds)
    del seeds  # from here on the seeds are read from their files, batch by batch: memory stays flat
    outputs = run_stages(recipe, seed_files, run_id=state.run_id, work_dir=state.work_dir, funnel=funnel,
                         reporter=reporter, map_batches=map_batches, on_round=on_round)
    resumed, computed = outputs.resumed, outputs.computed
    written = _written_stages(recipe)
    replaced = _replaced_ids(recipe, outputs)

    def stream() -> Iterator[dict[str, Any]]:
        if recipe.output.include_seeds:
            yield from iter_rows(outputs.seeds)
        for stage in written:
            yield from iter_rows(outputs.paths(stage.stage_name))

    total = (n_seeds if recipe.output.include_seeds else 0) + sum(
        pq.read_metadata(p).num_rows for stage in written for p in outputs.paths(stage.stage_name)
    )
    reporter.stage_started("verify+dedup+write", total)

    def tick(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for rec in records:
            reporter.advance("verify+dedup+write", 1)
            yield rec

    from pipeline import dedup

    compression = "none" if recipe.output.compression == "none" else recipe.output.compression
    round_kept = Funnel()
    verified_by: dict[str, int] = {}
    generation = Generation(state.out_dir)  # published (data/ and dropped/ switched in) only when complete
    dropped = (
        DroppedWriter(state.out_dir, recipe.output.rows_per_shard, compression, generation=generation)
        if recipe.output.keep_dropped
        else None
    )

    def drop_to(step: str) -> Callable[[dict[str, Any], str | None], None] | None:
        if dropped is None:
            return None
        if step in ("exact_dedup", "near_dedup"):
            what = (
                "the same question (normalised)"
                if step == "exact_dedup"
                else f"a near-duplicate question (estimated Jaccard >= {recipe.dedup.near.threshold:g})"
            )
            return lambda rec, keeper: dropped.add(
                rec, step, what + (" of a row of earlier output (dedup.against)" if keeper is None else ""), keeper
            )
        return lambda rec, detail: dropped.add(rec, step, detail)

    if dropped is not None:
        for stage_name, candidate in _rejected_candidates(recipe, outputs):
            dropped.add(candidate, f"stage:{stage_name}", (candidate.get("verification") or {}).get("detail"))
    rows: Iterable[dict[str, Any]] = tick(stream())
    if replaced:
        rows = _drop_replaced(
            rows, replaced, funnel, (lambda rec, what, new: dropped.add(rec, "replaced", what, new)) if dropped else None
        )
    rows = verify_records(rows, recipe.verify.consistency, recipe.verify.keep_failed, funnel, drop_to("verify"))
    if recipe.dedup.exact:
        rows = dedup.exact_dedup(
            rows,
            funnel=funnel,
            stage_order=recipe.stage_order(),
            max_solutions=recipe.dedup.max_solutions_per_question,
            prefer=recipe.dedup.prefer,
            length_targets=recipe.dedup.length_targets,
            work_dir=state.work_dir / "exact",
            on_duplicate=drop_to("exact_dedup"),
        )
    if recipe.dedup.near.enabled:
        rows = dedup.near_dedup(
            rows,
            threshold=recipe.dedup.near.threshold,
            num_perm=recipe.dedup.near.num_perm,
            funnel=funnel,
            index_dir=state.work_dir / "lsh",
            against=[Path(p) for p in recipe.dedup.against],
            stage_order=recipe.stage_order(),
            max_per_cluster=recipe.dedup.near.max_per_cluster,
            prefer=recipe.dedup.prefer,
            keep_solutions=recipe.dedup.exact and recipe.dedup.max_solutions_per_question > 1,
            on_duplicate=drop_to("near_dedup"),
        )
    if recipe.decontaminate.enabled:
        semantic = None
        if recipe.decontaminate.semantic.enabled:  # the embedding tier (issue 21): model loaded before any row
            from pipeline.dedup.semantic import SemanticSetupError, from_spec

            reporter.stage_started("semantic decontamination", total)
            try:
                semantic = from_spec(
                    recipe.decontaminate.semantic,
                    recipe.decontaminate.benchmarks,
                    models=recipe.models,
                    base_dir=recipe.base_dir,
                    llm_cache=state.work_dir / "llm_cache.sqlite",
                    progress=lambda phase, n: reporter.advance("semantic decontamination", n),
                    on_close=lambda: reporter.stage_finished("semantic decontamination"),
                )
            except SemanticSetupError as exc:
                raise BuildError(str(exc)) from None
        rows = dedup.decontaminate(
            rows,
            benchmarks=recipe.decontaminate.benchmarks,
            ngram=recipe.decontaminate.ngram,
            funnel=funnel,
            on_contaminated=drop_to("decontaminate"),
            semantic=semantic,
        )
    with ShardWriter(
        state.out_dir,
        rows_per_shard=recipe.output.rows_per_shard,
        run_id=state.run_id,
        split=recipe.output.split,
        compression=compression,
        generation=generation,
    ) as writer:
        try:
            writer.write(_count_kept(_finalize(rows, recipe.output.strip_calculator_annotations, round_kept, verified_by), funnel))
        finally:  # what was dropped before a failure is still worth reading
            dropped_summary = dropped.close() if dropped is not None else None
        reporter.stage_finished("verify+dedup+write")
        seconds = time.perf_counter() - started
        manifest = writer.finish(
            recipe_name=recipe.name,
            recipe_hash=recipe.fingerprint(),
            limit=limit,
            mathaug_version=__version__,
            methods=sorted({"seed", *(s.method for s in recipe.stages)}),
            funnel=funnel.to_dict(),
            batches={"resumed": resumed, "computed": computed},
            verification_methods=verified_by,
            **({"rounds": _rounds_summary(outputs, round_kept)} if outputs.rounds else {}),
            seconds=round(seconds, 3),
            **({"dropped": dropped_summary} if dropped_summary is not None else {}),
        )
        # the card, then the switch of data/ and dropped/, then the manifest: a reader never sees a partial dataset
        card_note = publish_card(state.out_dir, render_card(recipe, manifest, funnel), manifest)
        if card_note:
            reporter.message(card_note)
        manifest = writer.publish()
    release_run_lock(state.out_dir)
    return BuildResult(state.out_dir, state.run_id, writer.rows_written, funnel, manifest, seconds, resumed,
                       computed, report)
