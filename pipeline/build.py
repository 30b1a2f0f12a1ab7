"""The build: seeds → stages (in batches, each batch saved atomically) → verify → dedup → decontaminate → shards.

This module is plain Python. ``flows/`` runs the same ``run_build`` with a ``map_batches`` that turns each batch
into a Prefect task; the CLI and tests can call it directly. The files under ``OUT/.mathaug/`` are the record of
progress: a batch whose output file exists is never computed again, so a killed build resumes where it stopped
and produces the same rows with the same ids.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline import __version__
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
from pipeline.io.shards import ShardWriter, atomic_write_bytes, atomic_write_table
from pipeline.paths import ROOT
from pipeline.recipe import Recipe, StageSpec
from pipeline.records import VERIFIED_STATUSES, from_table, to_table
from pipeline.stages import StageContext, get_stage

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


# ------------------------------------------------------------------------------------------------ batches


@dataclass
class BatchJob:
    """One unit of work: a stage over one batch of input records. Its output file is its completion marker."""

    stage: StageSpec
    index: int
    records: list[dict[str, Any]]
    key: str
    out_path: Path
    run_id: str
    seed: int
    work_dir: Path
    models: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.stage.stage_name}-batch-{self.index:05d}"


@dataclass
class BatchResult:
    stage: str
    index: int
    path: Path
    rows: int
    funnel: dict[str, dict[str, Any]]
    cached: bool
    seconds: float


def batch_key(
    stage: StageSpec, seed: int, records: Sequence[dict[str, Any]], models: dict[str, Any] | None = None
) -> str:
    """Hash of (stage name, method, stage version, parameters, its model's identity, build seed, input content).

    Record ids are content hashes (question, solution, answer), so hashing the ids hashes the input's content.
    """
    module = get_stage(stage.method)
    params = stage.parsed_params().model_dump(mode="json")
    digest = hashlib.sha256()
    header = {"stage": stage.stage_name, "method": stage.method, "version": module.VERSION, "params": params,
              "seed": seed}
    model = models.get(params.get("model")) if models and isinstance(params.get("model"), str) else None
    if model is not None:  # what the stage's model returns is part of its config (not its throughput knobs)
        header["model"] = model.identity() if hasattr(model, "identity") else model
    digest.update(json.dumps(header, sort_keys=True).encode())
    for rec in records:
        digest.update(rec["id"].encode())
    return digest.hexdigest()[:24]


def plan_stage(
    state: RunState, stage: StageSpec, inputs: list[dict[str, Any]], batch_size: int
) -> list[BatchJob]:
    stage_dir = state.work_dir / "stages" / stage.stage_name
    jobs = []
    for index, start in enumerate(range(0, len(inputs), batch_size)):
        chunk = inputs[start : start + batch_size]
        key = batch_key(stage, state.recipe.seed, chunk, state.recipe.models)
        jobs.append(
            BatchJob(
                stage=stage,
                index=index,
                records=chunk,
                key=key,
                out_path=stage_dir / f"{index:05d}-{key}.parquet",
                run_id=state.run_id,
                seed=state.recipe.seed,
                work_dir=state.work_dir,
                models=dict(state.recipe.models),
            )
        )
    return jobs


# Model pools are per process (one engine per model per process), made on first use. The lock keeps batches
# running in threads (the flow's thread runner) from starting two engines for the same model.
_POOLS: dict[str, Any] = {}
_POOLS_LOCK = threading.Lock()


def model_pool(models: dict[str, Any], work_dir: Path) -> Any:
    key = json.dumps({k: v.model_dump(mode="json") for k, v in models.items()}, sort_keys=True) + str(work_dir)
    with _POOLS_LOCK:
        if key not in _POOLS:
            from pipeline.llm import ModelPool

            _POOLS[key] = ModelPool(models, cache_path=work_dir / "llm_cache.sqlite", funnel=Funnel())
        return _POOLS[key]


def close_model_pools() -> None:
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


def run_batch(job: BatchJob, advance: Callable[[int], None] = lambda n: None) -> BatchResult:
    """Run one batch, or load it if a previous run finished it. Idempotent and safe to retry."""
    sidecar = job.out_path.with_suffix(".json")
    if job.out_path.exists() and sidecar.exists():
        meta = json.loads(sidecar.read_text())
        advance(len(job.records))
        return BatchResult(job.stage.stage_name, job.index, job.out_path, meta["rows"], meta["funnel"], True, 0.0)
    module = get_stage(job.stage.method)
    funnel = Funnel()
    ctx = StageContext(
        stage=job.stage.stage_name,
        run_id=job.run_id,
        seed=job.seed,
        funnel=funnel,
        work_dir=job.work_dir,
        advance=advance,
    )
    if job.models:
        pool = model_pool(job.models, job.work_dir)
        ctx.model = lambda name: pool.client(name, stage=job.stage.stage_name, funnel=funnel)
    started = time.perf_counter()
    out = module.run(job.records, job.stage.parsed_params(), ctx)
    for rec in out:
        rec["run_id"] = job.run_id
    seconds = time.perf_counter() - started
    funnel.add(job.stage.stage_name, "seconds", seconds)
    meta = {"rows": len(out), "funnel": funnel.to_dict(), "key": job.key}
    atomic_write_bytes(sidecar, json.dumps(meta).encode())
    atomic_write_table(job.out_path, to_table(out))  # written last: its presence marks the batch done
    return BatchResult(job.stage.stage_name, job.index, job.out_path, len(out), meta["funnel"], False, seconds)


def read_batch(path: Path) -> list[dict[str, Any]]:
    return from_table(pq.read_table(path))


MapBatches = Callable[[list[BatchJob], Reporter], list[BatchResult]]


def map_sequential(jobs: list[BatchJob], reporter: Reporter) -> list[BatchResult]:
    return [run_batch(job, advance=lambda n, s=job.stage.stage_name: reporter.advance(s, n)) for job in jobs]


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
) -> BuildResult:
    """Run (or resume) a whole build and write the dataset. Returns the funnel and manifest."""
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

    outputs: dict[str, list[Path]] = {}
    resumed = computed = 0
    try:
        for stage in recipe.stages:
            inputs: list[dict[str, Any]] = []
            for src in stage.from_:
                inputs.extend(seeds if src == "seeds" else (r for p in outputs[src] for r in read_batch(p)))
            jobs = plan_stage(state, stage, inputs, recipe.batch_size)
            reporter.stage_started(stage.stage_name, len(inputs))
            results = map_batches(jobs, reporter)
            reporter.stage_finished(stage.stage_name)
            results.sort(key=lambda r: r.index)
            outputs[stage.stage_name] = [r.path for r in results]
            for res in results:
                funnel.merge(res.funnel)
                resumed += res.cached
                computed += not res.cached
    finally:
        close_model_pools()

    def stream() -> Iterator[dict[str, Any]]:
        if recipe.output.include_seeds:
            yield from seeds
        for stage in recipe.stages:
            for path in outputs[stage.stage_name]:
                yield from read_batch(path)

    total = (len(seeds) if recipe.output.include_seeds else 0) + sum(
        pq.read_metadata(p).num_rows for paths in outputs.values() for p in paths
    )
    reporter.stage_started("verify+dedup+write", total)

    def tick(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for rec in records:
            reporter.advance("verify+dedup+write", 1)
            yield rec

    from pipeline import dedup

    compression = "none" if recipe.output.compression == "none" else recipe.output.compression
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

    rows: Iterable[dict[str, Any]] = verify_records(
        tick(stream()), recipe.verify.consistency, recipe.verify.keep_failed, funnel, drop_to("verify")
    )
    if recipe.dedup.exact:
        rows = dedup.exact_dedup(
            rows,
            funnel=funnel,
            stage_order=recipe.stage_order(),
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
            writer.write(_count_kept(rows, funnel))
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
