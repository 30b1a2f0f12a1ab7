"""Stage batches: the unit of work, of resume and of parallelism.

A stage's input is read from its sources' files (the seeds file and earlier stages' batch files), batch by batch:
a ``BatchJob`` holds only where its rows are (file slices) and its key, so planning a stage over millions of rows
costs a column of ids, not the rows. A batch's output file is its completion marker: a rerun loads it instead of
recomputing, so a killed build resumes where it stopped and makes the same rows with the same ids.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.funnel import Funnel
from pipeline.io.shards import atomic_write_bytes, atomic_write_table
from pipeline.recipe import StageSpec
from pipeline.records import SCHEMA, SCHEMA_VERSION, from_table, to_table
from pipeline.stages import StageContext, get_stage

REJECTED_SUFFIX = ".rejected.parquet"


@dataclass(frozen=True)
class Slice:
    """Rows ``start .. start + length`` of one Parquet file."""

    path: str
    start: int
    length: int


@dataclass
class BatchJob:
    """One unit of work: a stage over one batch of input rows. Its output file is its completion marker."""

    stage: StageSpec
    index: int
    inputs: list[Slice]
    key: str
    out_path: Path
    run_id: str
    seed: int
    work_dir: Path
    models: dict[str, Any] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    round: int | None = None

    @property
    def label(self) -> str:
        suffix = f"-r{self.round}" if self.round else ""
        return f"{self.stage.stage_name}{suffix}-batch-{self.index:05d}"

    @property
    def size(self) -> int:
        return sum(s.length for s in self.inputs)

    @property
    def records(self) -> list[dict[str, Any]]:
        """The batch's input rows, read from their files (on the worker that runs the batch)."""
        rows: list[dict[str, Any]] = []
        tables: dict[str, pa.Table] = {}
        for s in self.inputs:
            if s.path not in tables:
                tables[s.path] = pq.read_table(s.path, schema=SCHEMA)
            rows.extend(from_table(tables[s.path].slice(s.start, s.length)))
        return rows

    @property
    def done(self) -> bool:
        return self.out_path.exists() and self.out_path.with_suffix(".json").exists()


@dataclass
class BatchResult:
    stage: str
    index: int
    path: Path
    rows: int
    funnel: dict[str, dict[str, Any]]
    cached: bool
    seconds: float
    round: int | None = None


def role_identities(stage: StageSpec, models: dict[str, Any], roles: dict[str, str]) -> dict[str, Any]:
    """What each role's model returns depends on (its identity, not its throughput knobs)."""
    out = {}
    for role, name in sorted(roles.items()):
        model = models.get(name)
        out[role] = model.identity() if hasattr(model, "identity") else model
    return out


def batch_key(
    stage: StageSpec,
    seed: int,
    ids: Sequence[str],
    models: dict[str, Any] | None = None,
    roles: dict[str, str] | None = None,
    round: int | None = None,
) -> str:
    """Hash of (stage name, method, stage version, parameters, each role's model identity, build seed, round,
    schema version, input content).

    Record ids are content hashes (question, solution, answer), so hashing the ids hashes the input's content.
    """
    module = get_stage(stage.method)
    params = stage.parsed_params().model_dump(mode="json")
    digest = hashlib.sha256()
    header: dict[str, Any] = {"stage": stage.stage_name, "method": stage.method, "version": module.version,
                              "params": params, "seed": seed, "schema": SCHEMA_VERSION}
    if roles:  # a second model (a student, a solver) is as much part of the output as the first
        header["roles"] = role_identities(stage, models or {}, roles)
    if round is not None:
        header["round"] = round
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for rid in ids:
        digest.update(str(rid).encode())
    return digest.hexdigest()[:24]


def _id_slices(paths: Sequence[Path], batch_size: int) -> Iterator[tuple[list[Slice], list[str]]]:
    """The rows of ``paths`` in order, cut into batches of ``batch_size``: (slices, ids) per batch."""
    slices: list[Slice] = []
    ids: list[str] = []
    for path in paths:
        column = pq.read_table(path, columns=["id"]).column("id").to_pylist()
        start = 0
        while start < len(column):
            take = min(batch_size - len(ids), len(column) - start)
            slices.append(Slice(str(path), start, take))
            ids.extend(column[start : start + take])
            start += take
            if len(ids) == batch_size:
                yield slices, ids
                slices, ids = [], []
    if ids:
        yield slices, ids


def plan_stage(
    stage: StageSpec,
    sources: Sequence[Path],
    *,
    stage_dir: Path,
    run_id: str,
    seed: int,
    work_dir: Path,
    batch_size: int,
    models: dict[str, Any],
    round: int | None = None,
    roles: dict[str, str] | None = None,
) -> list[BatchJob]:
    """The stage's batches over its source files, in order (reads only the ``id`` column). ``roles``: the round's
    role -> model mapping when it differs from the recipe's (``stage_runner.round_models``)."""
    if roles is None:
        roles = stage.role_models(models) if models else {}
    jobs = []
    for index, (slices, ids) in enumerate(_id_slices(sources, batch_size)):
        key = batch_key(stage, seed, ids, models, roles, round)
        jobs.append(
            BatchJob(stage=stage, index=index, inputs=slices, key=key,
                     out_path=stage_dir / f"{index:05d}-{key}.parquet", run_id=run_id, seed=seed,
                     work_dir=work_dir, models=dict(models), roles=roles, round=round)
        )
    return jobs


# Model pools are per process (one engine per model per process), made on first use. The lock keeps batches
# running in threads (the flow's thread runner) from starting two engines for the same model.
_POOLS: dict[str, Any] = {}
_POOLS_LOCK = threading.Lock()


def _pool_key(models: dict[str, Any], work_dir: Path) -> str:
    return json.dumps({k: v.model_dump(mode="json") for k, v in models.items()}, sort_keys=True) + str(work_dir)


def model_pool(models: dict[str, Any], work_dir: Path) -> Any:
    key = _pool_key(models, work_dir)
    with _POOLS_LOCK:
        if key not in _POOLS:
            from pipeline.llm import ModelPool

            _POOLS[key] = ModelPool(models, cache_path=work_dir / "llm_cache.sqlite", funnel=Funnel())
        return _POOLS[key]


def release_models_except(keep: set[str]) -> list[str]:
    """Free the in-process engines of models outside ``keep`` (unless their config says ``keep_loaded``), so
    the next stage's model has the GPU to itself. Returns the names released."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
    released = []
    for pool in pools:
        for name, config in pool.configs.items():
            if name not in keep and not getattr(config, "keep_loaded", False) and pool.release(name):
                released.append(name)
    return released


def close_model_pools() -> None:
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


def run_batch(job: BatchJob, advance: Callable[[int], None] = lambda n: None) -> BatchResult:
    """Run one batch, or load it if a previous run finished it. Idempotent and safe to retry."""
    sidecar = job.out_path.with_suffix(".json")
    name = job.stage.stage_name
    if job.done:
        meta = json.loads(sidecar.read_text())
        advance(job.size)
        return BatchResult(name, job.index, job.out_path, meta["rows"], meta["funnel"], True, 0.0, job.round)
    stage = get_stage(job.stage.method)
    funnel = Funnel()
    rejected: list[dict[str, Any]] = []

    def keep_rejected(candidate: dict[str, Any], reason: str, detail: str) -> None:
        verification = dict(candidate.get("verification") or {})
        verification["status"] = "failed"
        verification["detail"] = f"{reason}: {detail}" if detail else reason
        rejected.append({**candidate, "verification": verification, "run_id": job.run_id})

    ctx = StageContext(stage=name, run_id=job.run_id, seed=job.seed, funnel=funnel, work_dir=job.work_dir,
                       advance=advance, roles=job.roles, round=job.round, batch=job.index,
                       on_reject=keep_rejected)
    if job.models:
        pool = model_pool(job.models, job.work_dir)
        ctx.model = lambda model_name: pool.client(model_name, stage=name, funnel=funnel)
    started = time.perf_counter()
    out = stage.run(job.records, job.stage.parsed_params(), ctx)
    for rec in out:
        rec["run_id"] = job.run_id
        if job.round is not None:
            rec["round"] = job.round
    seconds = time.perf_counter() - started
    funnel.add(name, "seconds", seconds)
    meta = {"rows": len(out), "funnel": funnel.to_dict(), "key": job.key, "rejected": len(rejected)}
    if rejected:
        atomic_write_table(job.out_path.with_name(job.out_path.stem + REJECTED_SUFFIX), to_table(rejected))
    atomic_write_bytes(sidecar, json.dumps(meta).encode())
    atomic_write_table(job.out_path, to_table(out))  # written last: its presence marks the batch done
    return BatchResult(name, job.index, job.out_path, len(out), meta["funnel"], False, seconds, job.round)


def rejected_path(batch_path: Path) -> Path:
    return batch_path.with_name(batch_path.stem + REJECTED_SUFFIX)


def read_batch(path: Path) -> list[dict[str, Any]]:
    return from_table(pq.read_table(path, schema=SCHEMA))


def iter_rows(paths: Sequence[Path], columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of batch files one record batch at a time: memory stays flat however many rows there are."""
    for path in paths:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=2048, columns=columns):
            yield from batch.to_pylist()


MapBatches = Callable[[list[BatchJob], Any], list[BatchResult]]


def map_sequential(jobs: list[BatchJob], reporter: Any) -> list[BatchResult]:
    return [run_batch(job, advance=lambda n, s=job.stage.stage_name: reporter.advance(s, n)) for job in jobs]
