"""What Prefect costs: the same build through the flow vs the same stages called directly, in one process.

Seeds: GSM8K train + MATH train from /work/shared (about 19.5k rows; the few MATH rows without a readable gold
answer are skipped), else the 400-row sample in data/seeds (then under the 10k-row target; said in the output).
The recipe is the quickstart's (symbolic variants + name swaps, verify, exact + near dedup, decontamination) with
batches of 1,000 rows, so every batch is one Prefect task.

Measured in the same run, alternating direct and flow builds (fresh directories) after a warm-up, as wall time
(fastest and median of the repeats) and as CPU time (this process's threads, plus the server process for the
flow), which other load on a shared machine does not inflate:
- direct: ``run_build(..., map_batches=map_sequential)``, no Prefect at all;
- flow: ``flows.build.build_with_flow`` (what ``mathaug build`` runs: the ``build_dataset`` flow) against the
  temporary local server (the CLI's default), started before the timing and reported separately (``server
  start``): it is paid once per ``mathaug build`` process.
Then the CLI end to end on the quickstart three ways: ``--direct``, the default (a temporary server per command),
and ``PREFECT_API_URL`` pointing at an already running ``prefect server start`` (how a user avoids the start).

Usage: ``python bench/flow_overhead.py [--repeats 4]``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = Path("/work/shared/data")


def make_recipe(work: Path) -> Path:
    recipe = yaml.safe_load((REPO / "recipes" / "quickstart.yaml").read_text())
    recipe["name"] = "flow-overhead"
    recipe["batch_size"] = 1000
    recipe["output"]["rows_per_shard"] = 50_000
    gsm8k, math_gz = SHARED / "gsm8k" / "train.jsonl", SHARED / "math" / "train.jsonl.gz"
    if gsm8k.exists() and math_gz.exists():
        math_plain = work / "math_train.jsonl"
        with gzip.open(math_gz, "rb") as src, math_plain.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        recipe["seeds"] = [
            {"format": "gsm8k", "path": str(gsm8k), "split": "train"},
            {"format": "math", "path": str(math_plain), "split": "train"},
        ]
    else:
        recipe["seeds"][0]["path"] = str(REPO / recipe["seeds"][0]["path"])
    path = work / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_runs(recipe_path: Path, work: Path) -> dict[str, float]:
    """Quickstart through the CLI: --direct, default (temporary server), and a running server."""
    import httpx

    env = {**os.environ, "PREFECT_HOME": str(work / "cli-home"), "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    quick = REPO / "recipes" / "quickstart.yaml"

    def timed(name: str, extra: list[str], run_env: dict[str, str]) -> float:
        started = time.perf_counter()
        cmd = [sys.executable, "-m", "pipeline.cli", "build", str(quick), "--out", str(work / f"cli-{name}")]
        done = subprocess.run([*cmd, *extra], env=run_env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"{name}: {done.stderr[-2000:]}")
        return time.perf_counter() - started

    out = {"--direct": timed("direct", ["--direct"], env), "temporary server": timed("temp", [], env)}
    port = free_port()
    server_env = {**env, "PREFECT_UI_ENABLED": "false", "PREFECT_HOME": str(work / "server-home")}
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
            if time.perf_counter() - started > 120:
                raise RuntimeError("prefect server start timed out")
        out["prefect server start (once)"] = time.perf_counter() - started
        out["running server (PREFECT_API_URL)"] = timed("server", [], {**env, "PREFECT_API_URL": url})
    finally:
        server.terminate()
        server.wait(timeout=30)
    return out


def task_runs() -> int:
    """Task runs of the latest flow run on the server."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    time.sleep(2)  # task runs reach the server's database a moment after the flow returns
    with get_client(sync_client=True) as client:
        latest = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[latest.id])))
    return len(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--skip-cli", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mathaug-flow-overhead-"))
    os.environ["PREFECT_HOME"] = str(work / "prefect-home")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ.pop("PREFECT_API_URL", None)
    try:
        from prefect.server.api.server import SubprocessASGIServer

        from flows.build import build_with_flow
        from pipeline.build import load_seed_records, map_sequential, run_build
        from pipeline.io.shards import read_records
        from pipeline.recipe import load_recipe

        recipe_path = make_recipe(work)
        recipe = load_recipe(recipe_path)
        seeds = len(load_seed_records(recipe, skip_bad_rows=True))
        print(
            f"seeds: {seeds:,} rows{'' if seeds >= 10_000 else ' (under the 10k target: /work/shared absent)'}"
        )

        run_build(recipe, work / "warmup", limit=200, skip_bad_rows=True)  # imports, caches
        started = time.perf_counter()
        server = SubprocessASGIServer()  # the one `mathaug build` starts without PREFECT_API_URL
        server.start()
        server_start = time.perf_counter() - started

        server_proc = psutil.Process(server.server_process.pid)

        def server_cpu() -> float:
            t = server_proc.cpu_times()
            return t.user + t.system + t.children_user + t.children_system

        direct_s: list[float] = []
        flow_s: list[float] = []
        direct_cpu: list[float] = []
        flow_cpu: list[float] = []
        flow_server_cpu: list[float] = []
        idle_server_cpu: list[float] = []
        batches = rows = direct_rows = 0

        def run_direct(i: int) -> None:
            nonlocal direct_rows
            started, cpu0, srv0 = time.perf_counter(), time.process_time(), server_cpu()
            direct_rows = run_build(
                recipe, work / f"direct-{i}", skip_bad_rows=True, map_batches=map_sequential
            ).rows
            direct_s.append(time.perf_counter() - started)
            direct_cpu.append(time.process_time() - cpu0)
            idle_server_cpu.append((server_cpu() - srv0) / direct_s[-1])  # its background loops, per second

        def run_flow(i: int) -> None:
            nonlocal batches, rows
            started, cpu0, srv0 = time.perf_counter(), time.process_time(), server_cpu()
            flowed = build_with_flow(recipe_path, work / f"flow-{i}", skip_bad_rows=True)
            flow_s.append(time.perf_counter() - started)
            flow_server_cpu.append(server_cpu() - srv0)
            flow_cpu.append(time.process_time() - cpu0 + flow_server_cpu[-1])
            batches, rows = flowed.computed_batches, flowed.rows

        for i in range(args.repeats):  # alternate which goes first, so drift in the machine's speed evens out
            for run in (run_direct, run_flow) if i % 2 == 0 else (run_flow, run_direct):
                run(i)
            assert rows == direct_rows
            print(
                f"  run {i + 1}: direct {direct_s[-1]:6.1f} s wall {direct_cpu[-1]:6.1f} s CPU   "
                f"flow {flow_s[-1]:6.1f} s wall {flow_cpu[-1]:6.1f} s CPU (this process + server)"
            )
        same = sorted(r["id"] for r in read_records(work / "direct-0")) == sorted(
            r["id"] for r in read_records(work / "flow-0")
        )
        load = os.getloadavg()[0]
        print(
            f"same ids through the flow as direct: {same}; load average {load:.1f} on {os.cpu_count()} cores"
        )
        print(
            f"build of {seeds:,} seed rows -> {rows:,} rows; {batches} batches of 1,000 rows in "
            f"{task_runs()} Prefect tasks"
        )
        for name, d, f in (
            ("wall, fastest of each", min(direct_s), min(flow_s)),
            ("wall, median", statistics.median(direct_s), statistics.median(flow_s)),
            (
                "CPU (flow: this process + server), median",
                statistics.median(direct_cpu),
                statistics.median(flow_cpu),
            ),
        ):
            print(
                f"{name:<44} direct {d:6.1f} s  flow {f:6.1f} s  Prefect {f - d:+5.1f} s = {100 * (f - d) / d:+.1f}%"
            )
        server_in_flow = statistics.median(flow_server_cpu)
        in_process = statistics.median(flow_cpu) - server_in_flow - statistics.median(direct_cpu)
        print(
            f"  of which: this process {in_process:+.1f} s CPU ({100 * in_process / d:+.1f}% of the direct run), "
            f"the server process {server_in_flow:.1f} s CPU ({statistics.median(idle_server_cpu):.3f} s/s of it "
            "is its idle background loops)"
        )
        print(f"temporary server start (once per process, reported separately): {server_start:.1f} s")
        server.stop()
        if not args.skip_cli:
            print("quickstart through the CLI (process start, imports and all):")
            for name, seconds in cli_runs(recipe_path, work).items():
                print(f"  {name:<34} {seconds:5.1f} s")
        return 0 if same else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
