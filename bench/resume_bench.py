"""Resume under SIGKILL: kill `mathaug build` at 10 random moments, rerun it, compare with an uninterrupted build.

Each trial starts a build (through the Prefect flow, as users run it) into a fresh directory, SIGKILLs its whole
process group at a random moment (a random count of finished batches/shards plus a random delay), records what the kill left behind, reruns the same command to completion
and checks the result against a reference build made without interruption:

- the same set of ids, no duplicate ids, and the same rows (every column except ``run_id`` and ``created_at``:
  the reference lives in another directory, so it is another run; within the resumed directory every row carries
  the one run id of its ``run.json``, kept from the killed attempt);
- a complete manifest whose shards all exist with their listed row counts and sha256, and no other shard files;
- no temp files (``.NAME.tmp-PID``) left anywhere in the directory;
- the same dropped-rows table (``OUT/dropped``: the same ids, each removed by the same step in favour of the
  same kept row).

The builds report to one Prefect server started for the bench, so the kill moments fall in the build itself and
not in a temporary server's start. Seeds: GSM8K train from /work/shared when present (first 1,200 rows), else the
400-row sample shipped in data/seeds. Usage: ``python bench/resume_bench.py [--trials 10] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.io.shards import read_records, sha256_file  # noqa: E402

SHARED_GSM8K = Path("/work/shared/data/gsm8k/train.jsonl")
IGNORED = ("run_id", "created_at")


def make_recipe(work: Path) -> tuple[Path, int | None]:
    recipe = yaml.safe_load((REPO / "recipes" / "quickstart.yaml").read_text())
    recipe["name"] = "resume-bench"
    if SHARED_GSM8K.exists():
        recipe["seeds"][0]["path"] = str(SHARED_GSM8K)
        limit, recipe["batch_size"] = 1200, 60
    else:
        recipe["seeds"][0]["path"] = str(REPO / recipe["seeds"][0]["path"])
        limit, recipe["batch_size"] = None, 25
    recipe["output"]["rows_per_shard"] = 500  # several shards, so kills can land mid-write
    path = work / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path, limit


def start_server(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect-server"), "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=(work / "server.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api"
    for _ in range(240):
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError("prefect server did not start")


def build_cmd(recipe: Path, out: Path, limit: int | None) -> list[str]:
    cmd = [sys.executable, "-m", "pipeline.cli", "build", str(recipe), "--out", str(out)]
    return cmd + (["--limit", str(limit)] if limit else [])


def run_to_end(cmd: list[str], env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("a") as fh:
        done = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"build failed (rc {done.returncode}); see {log}")
    return time.perf_counter() - started


def progress_events(out: Path) -> int:
    """Finished units of work so far: stage batch files, then dataset shards listed in the manifest."""
    stages = out / ".mathaug" / "stages"
    events = len(list(stages.glob("*/*.parquet"))) if stages.exists() else 0
    try:
        events += len(json.loads((out / "manifest.json").read_text())["shards"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        pass
    return events


def kill_at(cmd: list[str], env: dict[str, str], target: int, jitter: float, log: Path) -> tuple[bool, float]:
    """Start the build; once ``target`` units of work are done (or at once when 0), wait ``jitter`` s more and
    SIGKILL its process group. Returns (killed, seconds since start); killed is False when it finished first."""
    started = time.perf_counter()
    with log.open("a") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        out = Path(cmd[cmd.index("--out") + 1])
        while target and proc.poll() is None and progress_events(out) < target:
            time.sleep(0.02)
        try:
            proc.wait(timeout=jitter)
            return False, time.perf_counter() - started
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True, time.perf_counter() - started


def left_behind(out: Path) -> str:
    """What the kill left: batch files per stage, shards, manifest state."""
    stages = out / ".mathaug" / "stages"
    parts = []
    if not (out / ".mathaug" / "run.json").exists():
        return "nothing (killed before the run started)"
    for stage in sorted(stages.glob("*")) if stages.exists() else []:
        parts.append(f"{stage.name} {len(list(stage.glob('*.parquet')))} batches")
    manifest = out / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        parts.append(f"{len(m['shards'])} shards, manifest {'complete' if m['complete'] else 'incomplete'}")
    temps = [p for p in out.rglob(".*.tmp-*")]
    if temps:
        parts.append(f"{len(temps)} temp files")
    return ", ".join(parts) or "run.json only"


def rows(out: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for rec in read_records(out):
        if rec["id"] in found:
            raise AssertionError(f"duplicate id {rec['id']}")
        found[rec["id"]] = rec
    return found


def dropped(out: Path) -> list[tuple[str, str, str | None]]:
    """The dropped-rows table as (id, step, id kept in its place), sorted."""
    import pyarrow.parquet as pq

    if not (out / "dropped").is_dir():
        return []
    table = pq.read_table(out / "dropped", columns=["id", "dropped_by", "duplicate_of"])
    return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names)))


def check(out: Path, reference: dict[str, dict[str, Any]], reference_dropped: list[Any]) -> list[str]:
    problems = []
    manifest = json.loads((out / "manifest.json").read_text())
    if not manifest.get("complete"):
        problems.append("manifest not complete")
    listed = set()
    for shard in manifest["shards"]:
        path = out / shard["path"]
        listed.add(path.name)
        if not path.exists():
            problems.append(f"missing shard {shard['path']}")
        elif sha256_file(path) != shard["sha256"]:
            problems.append(f"sha256 mismatch {shard['path']}")
    extra = {p.name for p in (out / "data").glob("*.parquet")} - listed
    if extra:
        problems.append(f"unlisted shards {sorted(extra)}")
    temps = [str(p.relative_to(out)) for p in out.rglob(".*.tmp-*")]
    if temps:
        problems.append(f"temp files left: {temps[:3]}")
    try:
        got = rows(out)
    except AssertionError as exc:
        return [*problems, str(exc)]
    if set(got) != set(reference):
        problems.append(
            f"ids differ: {len(set(got) - set(reference))} extra, {len(set(reference) - set(got))} missing"
        )
    else:
        differing = [
            i
            for i in got
            if {k: v for k, v in got[i].items() if k not in IGNORED}
            != {k: v for k, v in reference[i].items() if k not in IGNORED}
        ]
        if differing:
            problems.append(f"{len(differing)} rows differ (e.g. {differing[0]})")
    if dropped(out) != reference_dropped:
        problems.append("the dropped-rows table differs")
    run_id = json.loads((out / ".mathaug" / "run.json").read_text())["run_id"]
    if {r["run_id"] for r in got.values()} != {run_id} or manifest["run_id"] != run_id:
        problems.append("rows or manifest carry another run id than run.json")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mathaug-resume-bench-"))
    recipe, limit = make_recipe(work)
    server, url = start_server(work)
    env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_LOGGING_LEVEL": "WARNING", "COLUMNS": "120"}
    env.pop("PREFECT_HOME", None)
    try:
        ref_dir = work / "reference"
        seconds = run_to_end(build_cmd(recipe, ref_dir, limit), env, work / "reference.log")
        reference = rows(ref_dir)
        reference_dropped = dropped(ref_dir)
        batches = json.loads((ref_dir / "manifest.json").read_text())["batches"]["computed"]
        print(
            f"reference build: {len(reference):,} rows ({len(reference_dropped):,} dropped), {batches} batches, "
            f"{len(json.loads((ref_dir / 'manifest.json').read_text())['shards'])} shards, "
            f"{seconds:.1f} s wall (CLI process start included)"
        )
        shards = len(json.loads((ref_dir / "manifest.json").read_text())["shards"])
        total_events = batches + shards
        rng = random.Random(args.seed)
        # a random moment = a random number of finished units of work (0: during start-up) plus a random delay,
        # so kills land before the run starts, between and inside batch writes, in dedup and inside shard writes
        # stratified: the i-th kill's target lies in the i-th tenth of the work, so every phase gets visited
        n = args.trials
        moments = [
            (
                rng.randrange(
                    k * total_events // n, max(k * total_events // n + 1, (k + 1) * total_events // n)
                ),
                rng.uniform(0.0, 0.4),
            )
            for k in range(n)
        ]
        moments = [(t, j + (rng.uniform(0.5, 4.0) if t == 0 else 0.0)) for t, j in moments]
        passed = 0
        for i, (target, jitter) in enumerate(moments, start=1):
            out = work / f"trial-{i:02d}"
            log = work / f"trial-{i:02d}.log"
            killed, at = kill_at(build_cmd(recipe, out, limit), env, target, jitter, log)
            state = left_behind(out) if killed else "finished before the kill"
            resume_s = run_to_end(build_cmd(recipe, out, limit), env, log)
            problems = check(out, reference, reference_dropped)
            batches_info = json.loads((out / "manifest.json").read_text())["batches"]
            ok = not problems
            passed += ok
            print(
                f"trial {i:2d}: SIGKILL at {at:5.1f} s ({target}/{total_events} units done + {jitter:.2f} s) → "
                f"left {state}; resumed in {resume_s:.1f} s ({batches_info['resumed']} batches reused, "
                f"{batches_info['computed']} computed): "
                + ("identical" if ok else "FAILED: " + "; ".join(problems))
            )
        print(f"{passed}/{len(moments)} resumed builds identical to the uninterrupted build")
        return 0 if passed == len(moments) else 1
    finally:
        server.terminate()
        server.wait(timeout=30)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")


if __name__ == "__main__":
    sys.exit(main())
