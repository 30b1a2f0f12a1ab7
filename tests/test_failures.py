"""Every expected failure of ``mathaug build``, through the real CLI in a subprocess: one line naming the file,
line or field, exit code 2, no traceback, and every file that existed before is byte-identical after. Also: a
user's own files survive every CLI path, one build per directory, clean stops on signals and SIGKILL.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipeline.io.rundir import LOCK_FILE
from tests.fixtures.faults import (
    FAULTS,
    REPO,
    USER_FILES,
    can_mount,
    cli_env,
    error_lines,
    make_workspace,
    mathaug,
    run_fault,
    write_recipe,
)

MOUNT = can_mount()


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, prefect_home: Path) -> Path:
    return make_workspace(tmp_path_factory.mktemp("faults"), prefect_home)


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_a_fault_is_one_line_exit_2_and_touches_nothing(fault, workspace: Path, prefect_home: Path) -> None:
    if fault.needs_mount and not MOUNT:
        pytest.skip("needs root and tmpfs mounts to make a read-only or full disk")
    outcome = run_fault(fault, workspace, prefect_home)
    assert outcome.returncode == 2, outcome.stderr[-3000:]
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    assert len(outcome.lines) == 1, outcome.stderr[-3000:]
    line = outcome.lines[0]
    setup = fault.setup.__name__
    for fragment in outcome.expect:
        assert fragment in line, (fragment, line)
    assert "--fresh" not in line or setup == "_other_recipe"  # never suggested for a directory that is not a run
    assert outcome.changed == [], outcome.changed
    if setup != "_full_disk":  # found before Prefect or any writing started
        assert "Beginning flow run" not in outcome.stderr and not (workspace / "new-out").exists()
    assert outcome.rerun_returncode in (None, 0), "after the fault was undone, the same command failed"
    found = re.search(r"after (\d+\.\d)s", line)
    if found:  # the unreachable server: the check's own time, whatever the load on this machine
        assert float(found.group(1)) <= 15


def test_skip_bad_rows_skips_bytes_that_are_not_utf8_and_a_piped_funnel_is_whole(
    tmp_path: Path, prefect_home: Path
) -> None:
    seeds = tmp_path / "mixed.jsonl"
    good = REPO / "data" / "seeds" / "gsm8k_train_sample.jsonl"
    lines = good.read_bytes().splitlines(keepends=True)[:6]
    seeds.write_bytes(b"".join(lines[:3]) + b'{"question": "Ren\xe9?", "answer": "#### 1"}\n' + b"".join(lines[3:]))
    recipe = write_recipe(tmp_path / "r.yaml", seeds)
    done = mathaug(["build", str(recipe), "--out", str(tmp_path / "out"), "--skip-bad-rows", "--direct"],
                   cli_env(prefect_home), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skipped 1 bad seed rows" in done.stderr and "mixed.jsonl:4: not UTF-8" in done.stderr
    manifest_path = tmp_path / "out" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["funnel"]["seed"]["in"] == 6
    # a funnel as wide as a model stage's (requests, tokens ...), read back by `inspect` into a pipe
    manifest["funnel"]["symbolic"].update({"failed": 1, "duplicates": 2, "contaminated": 3, "requests": 1_234_567,
                                           "cache_hits": 1_000_000, "tokens_in": 987_654_321,
                                           "tokens_out": 123_456_789, "llm_seconds": 4321.5})
    manifest_path.write_text(json.dumps(manifest))
    shown = mathaug(["inspect", str(tmp_path / "out")], cli_env(prefect_home), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-3000:]
    header = next(line for line in shown.stdout.splitlines() if "stage" in line and "kept" in line)
    assert len(header) > 80 and header.rstrip().endswith("┃") and "…" not in shown.stdout, shown.stdout
    assert "987,654,321" in shown.stdout  # piped, the table is whole, not cut at 80 columns


def test_a_failed_start_leaves_nothing_and_the_fix_builds(tmp_path: Path, prefect_home: Path) -> None:
    seeds = tmp_path / "later.jsonl"
    recipe = write_recipe(tmp_path / "r.yaml", seeds)
    out = tmp_path / "out"
    failed = mathaug(["build", str(recipe), "--out", str(out)], cli_env(prefect_home), cwd=tmp_path)
    assert failed.returncode == 2 and "later.jsonl: file not found" in failed.stderr
    assert not out.exists()  # no run.json that would make the fixed recipe "a different recipe"
    shutil.copy(REPO / "data" / "seeds" / "gsm8k_train_sample.jsonl", seeds)
    done = mathaug(["build", str(recipe), "--out", str(out), "--limit", "10", "--direct"],
                   cli_env(prefect_home), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


def test_version() -> None:
    from pipeline import __version__

    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"mathaug {__version__}"


def _user_files(root: Path) -> dict[str, str]:
    return {rel: (root / rel).read_text() for rel in USER_FILES}


def test_user_files_survive_every_cli_path(workspace: Path, tmp_path: Path, prefect_home: Path) -> None:
    """Files beside and inside data/ of a run, through resume, refusals, inspect and --fresh."""
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws, symlinks=True)
    run, env = ws / "run", cli_env(prefect_home)
    mine = {**{f"ws/{k}": v for k, v in _user_files(ws).items()}, **{f"run/{k}": v for k, v in _user_files(run).items()}}

    def check() -> None:
        now = {**{f"ws/{k}": v for k, v in _user_files(ws).items()},
               **{f"run/{k}": v for k, v in _user_files(run).items()}}
        assert now == mine

    base = ["build", "quickstart", "--out", str(run), "--limit", "20"]
    for args, code in (([*base, "--direct"], 0), ([*base, "--no-resume"], 2), (["build", "quickstart", "--out",
                       str(run), "--limit", "21"], 2), (["inspect", str(run)], 0), ([*base, "--fresh", "--direct"], 0),
                       (["build", "quickstart", "--out", str(ws), "--fresh"], 2), (["build", "quickstart", "--out",
                       str(ws / "data")], 2)):
        proc = mathaug(args, env, cwd=ws)
        assert proc.returncode == code, (args, proc.stderr[-3000:])
        check()
    # the user's README.md is not the card: left as is, the card went aside; data/ holds the new shards and theirs
    assert (run / ".mathaug" / "README.card.md").exists()
    manifest = json.loads((run / "manifest.json").read_text())
    assert sorted(p.name for p in (run / "data").iterdir()) == sorted(
        ["mine.csv", *(Path(s["path"]).name for s in manifest["shards"])])
    assert manifest["rows"] > 20


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the build exited ({proc.returncode}) before {what}: {_stderr(proc)[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """The CLI in the background, its output in files (a pipe would also time any grandchild holding it)."""
    log = cwd / f"cli-{time.monotonic_ns()}"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=log.with_suffix(".out").open("w"), stderr=log.with_suffix(".err").open("w"))
    proc.err_path = log.with_suffix(".err")  # type: ignore[attr-defined]
    return proc


def _stderr(proc: subprocess.Popen) -> str:
    return proc.err_path.read_text()  # type: ignore[attr-defined]


def _server_child(pid: int) -> psutil.Process | None:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    return next((p for p in kids if "uvicorn" in " ".join(p.cmdline())), None)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_one_build_per_directory_and_a_killed_build_leaves_no_server(tmp_path: Path, prefect_home: Path) -> None:
    out = tmp_path / "out"
    env = cli_env(prefect_home)
    first = _start(["build", "quickstart", "--out", str(out), "--limit", "20"], env, tmp_path)
    try:
        lock = out / ".mathaug" / LOCK_FILE
        _wait_for(lambda: lock.exists() and str(first.pid) in lock.read_text(), 600, "the lock", first)
        second = mathaug(["build", "quickstart", "--out", str(out), "--limit", "20", "--direct"], env, cwd=tmp_path)
        assert second.returncode == 2 and len(error_lines(second)) == 1, second.stderr[-3000:]
        assert f"is being built by another mathaug (pid {first.pid}, started 20" in error_lines(second)[0]

        server = _wait_for(lambda: _server_child(first.pid), 600, "the temporary Prefect server", first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        gone = psutil.wait_procs([server], timeout=10)[0]
        assert gone, f"the temporary server (pid {server.pid}) outlived the killed build"
    finally:
        if first.poll() is None:
            first.kill()
    # the OS dropped the dead build's lock: the next build runs (and resumes what was finished)
    again = mathaug(["build", "quickstart", "--out", str(out), "--limit", "20", "--direct"], env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]


def _slow_recipe(tmp_path: Path) -> Path:
    """The quickstart over all 400 seeds in batches of 8: many batch files, a few seconds of work."""
    recipe = (REPO / "recipes" / "quickstart.yaml").read_text()
    recipe = recipe.replace("data/seeds/", f"{REPO}/data/seeds/")
    path = tmp_path / "slow.yaml"
    path.write_text(re.sub(r"(?m)^batch_size:.*$", "", recipe) + "\nbatch_size: 8\n")
    return path


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("how", ["SIGINT --direct", "SIGTERM prefect"])
def test_a_signal_stops_the_build_in_seconds_keeps_batches_and_says_how_to_resume(
    how: str, tmp_path: Path, prefect_home: Path
) -> None:
    sig = signal.SIGINT if how.startswith("SIGINT") else signal.SIGTERM
    out = tmp_path / "out"
    args = ["build", str(_slow_recipe(tmp_path)), "--out", str(out), *(["--direct"] if "direct" in how else [])]
    env = cli_env(prefect_home)
    build = _start(args, env, tmp_path)
    try:
        stages = out / ".mathaug" / "stages"
        _wait_for(lambda: stages.is_dir() and len(list(stages.rglob("*.parquet"))) >= 2, 900, "two batches", build)
        server = _server_child(build.pid)
        children = psutil.Process(build.pid).children(recursive=True)
        build.send_signal(sig)
        sent = time.monotonic()
        build.wait(timeout=60)
        stopped = time.monotonic() - sent
    finally:
        if build.poll() is None:
            build.kill()
    stderr = _stderr(build)
    assert build.returncode == 130 and stopped < 10, (stopped, stderr[-3000:])
    left = psutil.wait_procs(children, timeout=10)[1]
    assert not left, f"processes of the stopped build still run: {[p.cmdline() for p in left]}"
    assert "interrupted" in stderr and "resume with: mathaug build" in stderr and "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "| ERROR" in line and "Crash detected" not in line]
    assert not errors, errors  # e.g. no telemetry error from the temporary server (Prefect reports the crash)
    assert any(line.startswith("interrupted: ") and "resume with: mathaug build" in line
               for line in stderr.splitlines())  # one line
    kept = len(list((out / ".mathaug" / "stages").rglob("*.parquet")))
    assert kept >= 2 and not (out / "manifest.json").exists()
    if server is not None:
        assert psutil.wait_procs([server], timeout=10)[0], "the temporary server outlived the stopped build"
    again = mathaug([*args[:4], "--direct"], env, cwd=tmp_path, timeout=600)
    assert again.returncode == 0 and "batches resumed from disk" in again.stdout, again.stderr[-3000:]
