"""Where snippets run: away from the cores an in-process CPU engine pinned (``SandboxConfig.cpus``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.sandbox import Sandbox, SandboxConfig
from pipeline.sandbox.cpus import pinned_cpus
from pipeline.sandbox.pool import WORKER_SCRIPT

pytestmark = pytest.mark.timeout(180)

AFFINITY = "import os\nprint(sorted(os.sched_getaffinity(0)))"
TWO_CPUS = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")


def test_pinned_cpus_counts_narrow_processes_but_not_sandbox_workers() -> None:
    ours = {0, 1, 2, 3}
    processes = [
        ({0, 1}, "VLLM::Worker"),  # pinned by the engine: held
        ({0, 1, 2, 3}, "VLLM::EngineCore"),  # floats: holds nothing
        ({3}, f"python -I -B {WORKER_SCRIPT} {{...}}"),  # our own sandbox worker, narrowed by us: not counted
        ({2, 9}, "other"),  # only the cores we have count
    ]
    assert pinned_cpus(ours, processes, WORKER_SCRIPT) == {0, 1, 2}
    assert pinned_cpus(ours, [], WORKER_SCRIPT) == set()


# Run in a fresh process: in the test session a shared vLLM engine (other tests' fixture) may hold cores too.
SCENARIO = """
import json, os, subprocess, sys, time
from pipeline.sandbox import Sandbox, SandboxConfig
from pipeline.sandbox.cpus import REFRESH_S
AFFINITY = "import os\\nprint(sorted(os.sched_getaffinity(0)))"
ours = sorted(os.sched_getaffinity(0))
out = {"ours": ours}
engine_like = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
try:
    os.sched_setaffinity(engine_like.pid, {ours[0]})
    with Sandbox(SandboxConfig(workers=1)) as auto, Sandbox(SandboxConfig(workers=1, cpus="all")) as anywhere:
        out["auto_pinned"] = auto.run(AFFINITY).output
        out["all"] = anywhere.run(AFFINITY).output
        engine_like.kill()
        engine_like.wait()
        time.sleep(REFRESH_S + 0.2)
        out["auto_after"] = auto.run(AFFINITY).output
    with Sandbox(SandboxConfig(workers=1, cpus=[ours[-1]])) as chosen:
        out["chosen"] = chosen.run(AFFINITY).output
finally:
    engine_like.kill()
    engine_like.wait()
print(json.dumps(out))
"""


@TWO_CPUS
def test_snippets_leave_the_cores_a_child_process_pinned() -> None:
    """The engine's worker is a process we started that pinned itself: snippets move off its core, and back
    once it is gone; ``all`` and an explicit list are obeyed."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", SCENARIO], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    ours = out["ours"]
    assert out["auto_pinned"] == str(ours[1:])
    assert out["all"] == str(ours)
    assert out["auto_after"] == str(ours)  # widened again: nothing is pinned any more
    assert out["chosen"] == str([ours[-1]])


@pytest.mark.slow
@TWO_CPUS
def test_snippets_avoid_the_vllm_cpu_engines_pinned_cores(tiny_vllm_models: dict) -> None:
    """On the real CPU engine: vLLM binds its worker's OpenMP threads ("auto"); no snippet shares those cores."""
    import psutil

    engine_cores: set[int] = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if "VLLM::Worker" in " ".join(proc.cmdline()):
                engine_cores |= set(proc.cpu_affinity())
        except psutil.Error:
            continue
    if not engine_cores or engine_cores >= os.sched_getaffinity(0):
        pytest.skip("the engine pinned no core here")
    with Sandbox(SandboxConfig(workers=1)) as sandbox:
        cores = set(eval(sandbox.run(AFFINITY).output))  # noqa: S307 - a list of ints we printed
    assert cores and not cores & engine_cores
