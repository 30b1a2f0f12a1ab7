"""Engine workers (pipeline/llm/workers.py) on the real vLLM CPU engine with the tiny model: recipes/persona.yaml
with ``data_parallel_size: 2`` gives the same dataset and the same completions as one in-process engine, both
workers serve requests, releasing the model stops them, a SIGKILLed ``mathaug build`` leaves no process behind,
and the Ray runner runs the engines as actors with the same result. Engine starts are few (each takes 30-120 s
on a loaded machine): one in-process engine (the session's), two workers, two half-started ones, two actors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.build import run_build
from pipeline.io.shards import read_records
from pipeline.llm import ModelConfig
from pipeline.llm.stream import RequestFeed
from pipeline.llm.types import ChatRequest, Completion
from pipeline.llm.workers import WorkerPoolBackend, _Router, worker_envs
from pipeline.recipe import Recipe
from tests.test_persona_e2e import SEEDS, persona_recipe

WORKER_MODULE = "pipeline.llm.workers"


def with_workers(recipe: Recipe, workers: int, **orchestration: Any) -> Recipe:
    teacher = recipe.models["teacher"].model_copy(update={"data_parallel_size": workers})
    update: dict[str, Any] = {"models": {**recipe.models, "teacher": teacher}}
    if orchestration:
        update["orchestration"] = recipe.orchestration.model_copy(update=orchestration)
    return recipe.model_copy(update=update)


def persona_yaml(tmp_path: Path, name: str, **extra: Any) -> Path:
    """recipes/persona.yaml as a file (its models still read MATHAUG_*), with ``data_parallel_size: 2`` and the
    persona test's change (no quantity check: random weights never keep the seed's numbers)."""
    from pipeline.paths import RECIPES_DIR

    data = yaml.safe_load((RECIPES_DIR / "persona.yaml").read_text())
    data["models"]["teacher"]["data_parallel_size"] = 2
    data["seeds"][0]["path"] = str(RECIPES_DIR.parent / data["seeds"][0]["path"])
    data["stages"][0]["params"]["check_quantities"] = False
    data.update(extra)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def completions(out: Path) -> dict[str, Any]:
    """Every cached request and its answer (the key never names a worker)."""
    db = sqlite3.connect(out / ".mathaug" / "llm_cache.sqlite")
    rows = {key: json.loads(resp)["texts"] for key, resp in db.execute("SELECT key, response FROM entries")}
    db.close()
    return rows


def dataset(out: Path) -> list[dict[str, Any]]:
    rows = [{k: v for k, v in r.items() if k not in ("run_id", "created_at")} for r in read_records(out)]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def dropped(out: Path) -> list[str]:
    import pyarrow.parquet as pq

    files = sorted((out / "dropped").rglob("*.parquet")) if (out / "dropped").is_dir() else []
    texts = [str(r.get("question")) + "|" + str(r.get("verification", {}).get("detail"))
             for f in files for r in pq.read_table(f).to_pylist()]
    return sorted(texts)


def test_layouts_split_the_cores_or_the_gpus() -> None:
    """Pure layout: GPUs in tensor-parallel slices; CPU cores split with one OMP list per engine rank."""
    cfg = ModelConfig(backend="vllm", model="m", gpus=[4, 5, 6, 7], tensor_parallel_size=2)
    assert cfg.engine_workers == 2 and cfg.uses_engine_workers
    assert [e["CUDA_VISIBLE_DEVICES"] for e in worker_envs(cfg, on_cpu=False)] == ["4,5", "6,7"]
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in worker_envs(cfg, on_cpu=False)[0]  # TP>1: vLLM's own ranks
    dp = ModelConfig(backend="vllm", model="m", data_parallel_size=3)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in worker_envs(dp, on_cpu=False)] == ["0", "1", "2"]
    binds = [e["VLLM_CPU_OMP_THREADS_BIND"] for e in worker_envs(dp.model_copy(update={"data_parallel_size": 2}),
                                                                   on_cpu=True)]
    cores = sorted(os.sched_getaffinity(0))
    assert binds == ([str(cores[0]), str(cores[1])] if len(cores) == 2 else binds) and len(set(binds)) == 2
    with pytest.raises(ValueError, match="multiple of tensor_parallel_size"):
        ModelConfig(backend="vllm", model="m", gpus=[0, 1, 2], tensor_parallel_size=2)
    assert not ModelConfig(backend="vllm", model="m").uses_engine_workers
    assert cfg.identity() == ModelConfig(backend="vllm", model="m").identity()  # the cache key ignores layout


def test_data_parallel_size_never_reaches_vllm_llm() -> None:
    from pipeline.llm.vllm_backend import engine_args

    args = engine_args(ModelConfig(backend="vllm", model="m", data_parallel_size=4, gpus=[0, 1]))
    assert "data_parallel_size" not in args and "gpus" not in args
    with pytest.raises(ValueError, match="data_parallel_size on the model"):
        engine_args(ModelConfig(backend="vllm", model="m", extra_engine_args={"data_parallel_size": 2}))


def test_dask_refuses_engine_workers() -> None:
    from flows.runners import check_engine_layout
    from pipeline.recipe import OrchestrationSpec

    models = {"teacher": ModelConfig(backend="vllm", model="m", data_parallel_size=2)}
    with pytest.raises(ValueError, match=r"models\.teacher\.data_parallel_size/gpus"):
        check_engine_layout(OrchestrationSpec(task_runner="dask"), models)
    check_engine_layout(OrchestrationSpec(task_runner="ray"), models)
    check_engine_layout(OrchestrationSpec(task_runner="dask"), {"teacher": ModelConfig(backend="vllm", model="m")})


class FakeEngines(_Router):
    """Two engines without vLLM: engine 0 answers slowly, engine 1 fast (each answer names its engine)."""

    def __init__(self, window: int) -> None:
        config = ModelConfig(backend="vllm", model="m", data_parallel_size=2,
                             extra_engine_args={"max_num_seqs": window})
        super().__init__(config, 2)

    def _send_to(self, engine: int, request_id: int, request: ChatRequest) -> None:
        delay = 0.2 if engine == 0 else 0.01
        answer = Completion(texts=[f"engine{engine}"], finish_reasons=["stop"], completion_tokens=1)
        threading.Timer(delay, self._finished, args=(request_id, answer)).start()


def test_a_slow_engine_never_idles_the_other() -> None:
    """Least-loaded routing with a window per engine: the fast engine takes most requests; every one is answered
    in its place; a conversation's turns are routed as they come."""
    engines = FakeEngines(window=2)
    got: dict[int, str] = {}
    requests = [ChatRequest(messages=[{"role": "user", "content": str(i)}]) for i in range(40)]
    engines.generate(requests, lambda i, c: got.__setitem__(i, c.texts[0]))
    assert sorted(got) == list(range(40)) and engines.served[0] + engines.served[1] == 40
    assert engines.served[1] > 3 * engines.served[0] > 0, engines.served
    assert engines.load == [0, 0]

    feed, turns = RequestFeed(), {0: 0, 1: 0}
    for tag in turns:
        feed.open(tag)

    def answer(item: Any, completion: Completion) -> None:
        tag = item[0]
        turns[tag] += 1
        if turns[tag] < 3:
            feed.put(tag, item[1])
        else:
            feed.close(tag)

    feed.answer = answer
    for tag in turns:
        feed.put(tag, requests[tag])
    engines.generate_stream(feed)
    assert turns == {0: 3, 1: 3}


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_workers_build_the_one_engine_dataset(
    tiny_vllm_models: dict, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import psutil

    recipe = persona_recipe(monkeypatch, MATHAUG_BACKEND="vllm", MATHAUG_MODEL=str(tiny_model_dir))
    one = run_build(recipe, tmp_path / "one", limit=SEEDS)  # the session's in-process engine

    pools: list[WorkerPoolBackend] = []
    original = WorkerPoolBackend.__init__

    def remember(self: WorkerPoolBackend, config: ModelConfig) -> None:
        original(self, config)
        pools.append(self)

    monkeypatch.setattr(WorkerPoolBackend, "__init__", remember)
    two = run_build(with_workers(recipe, 2), tmp_path / "two", limit=SEEDS)

    assert len(pools) == 1  # started once, for the whole build
    pool = pools[0]
    assert len(pool.pids) == 2 and all(pool.served), pool.served  # both workers answered requests
    assert sum(pool.served) == two.funnel.get("persona", "requests")
    assert two.funnel.get("persona", "requests") == one.funnel.get("persona", "requests") > SEEDS * 2
    assert completions(tmp_path / "two") == completions(tmp_path / "one")  # same keys, same texts
    assert dataset(tmp_path / "two") == dataset(tmp_path / "one")
    assert dropped(tmp_path / "two") == dropped(tmp_path / "one")
    # the build closed its pools: the workers exited, nothing is left
    assert pool._closed and all(p.poll() is not None for p in pool.processes)
    assert not [p for p in pool.pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_sigkill_of_the_build_leaves_no_worker(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A real ``mathaug build`` with two engine workers, SIGKILLed while they run: they die with it."""
    import psutil

    from tests.fixtures.vllm_server import vllm_cpu_env

    recipe = persona_yaml(tmp_path, "persona-dp2")
    env = {**os.environ, **vllm_cpu_env(tmp_path / "vcache"), "MATHAUG_BACKEND": "vllm",
           "MATHAUG_MODEL": str(tiny_model_dir), "MATHAUG_MAX_MODEL_LEN": "2048", "MATHAUG_ENFORCE_EAGER": "true",
           "MATHAUG_MAX_TOKENS": "48", "MATHAUG_REWRITE_MAX_TOKENS": "48"}  # fmt: skip
    log = (tmp_path / "build.log").open("wb")
    build = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "build", str(recipe), "--out",
                              str(tmp_path / "o"), "--limit", "2", "--direct"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 900
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline and len(workers) < 2:
            assert build.poll() is None, (tmp_path / "build.log").read_text()[-3000:]
            workers = [p for p in psutil.Process(build.pid).children(recursive=True)
                       if WORKER_MODULE in " ".join(p.cmdline())]
            time.sleep(1)
        assert len(workers) == 2
        time.sleep(20)  # well into their start (importing vLLM, loading the model)
        everything = psutil.Process(build.pid).children(recursive=True)
        os.kill(build.pid, signal.SIGKILL)
        build.wait(30)
        gone, alive = psutil.wait_procs(everything, timeout=30)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]
    finally:
        if build.poll() is None:
            build.kill()
        log.close()


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.usefixtures("prefect_server")
def test_ray_runner_runs_the_engines_as_actors(
    tiny_vllm_models: dict, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("prefect_ray")
    import pipeline.llm.workers as workers_module
    from flows.build import build_dataset

    recipe = persona_recipe(monkeypatch, MATHAUG_BACKEND="vllm", MATHAUG_MODEL=str(tiny_model_dir))
    one = tmp_path / "one"
    if not (one / ".mathaug").is_dir():
        run_build(recipe, one, limit=SEEDS)
    path = persona_yaml(tmp_path, "persona-ray", orchestration={"task_runner": "ray", "max_workers": 2})

    served: dict[str, int] = {}
    kill = workers_module.kill_engine_actors
    monkeypatch.setattr(workers_module, "kill_engine_actors", lambda: served.update(kill()) or served)
    state = build_dataset(str(path), str(tmp_path / "ray"), limit=SEEDS, return_state=True)
    assert state.is_completed(), state.message
    assert len(served) == 2 and all(served.values()), served  # two actors, both answered
    assert completions(tmp_path / "ray") == completions(one)
    assert dataset(tmp_path / "ray") == dataset(one)
