"""Which CPUs snippets run on: away from the cores an in-process CPU engine has pinned its compute threads to.

Why: vLLM's CPU engine binds its worker's OpenMP threads to fixed cores (``VLLM_CPU_OMP_THREADS_BIND``, "auto"
by default) and leaves the rest to its scheduler process and to us. An OpenMP step waits for its slowest thread,
so a snippet that lands on a bound core stalls the whole engine step, and the snippet itself queues behind a
thread that never yields: on 2 cores a call that takes 9 ms idle had a p90 of 59-616 ms beside the generating
engine on any core, 15-102 ms off the bound core (``bench/code_tir_bench.py``, ``bench/RESULTS.md``). On GPU
engines nothing is pinned and this changes nothing.

``auto`` finds the pinned cores from the processes this process started (an engine's workers are its
descendants): any descendant whose affinity is narrower than ours, other than sandbox workers and their
snippets, holds cores for itself. Snippets get our cores minus those, or all of ours when that leaves none.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

REFRESH_S = 2.0  # an engine may start after the sandbox: look again at most this often


def pinned_cpus(ours: set[int], processes: Iterable[tuple[set[int], str]], skip_marker: str) -> set[int]:
    """Cores held by processes pinned narrower than ``ours``; ``processes`` are (affinity, command line) pairs,
    those whose command line holds ``skip_marker`` (our own sandbox workers) are not counted."""
    held: set[int] = set()
    for affinity, cmdline in processes:
        if skip_marker in cmdline or not affinity or affinity >= ours:
            continue
        held |= affinity & ours
    return held


def snippet_cpus(setting: str | list[int], skip_marker: str) -> list[int] | None:
    """The CPU list for snippets under ``setting`` ("auto", "all" or explicit ids); None leaves affinity alone."""
    if setting == "all" or not hasattr(os, "sched_getaffinity"):
        return None
    ours = os.sched_getaffinity(0)
    if not isinstance(setting, str):
        chosen = set(setting) & ours
        return sorted(chosen) if chosen else None
    import psutil

    processes = []
    for proc in psutil.Process().children(recursive=True):
        try:
            processes.append((set(proc.cpu_affinity()), " ".join(proc.cmdline())))
        except psutil.Error:  # exited, or not ours to inspect
            continue
    free = ours - pinned_cpus(ours, processes, skip_marker)
    return sorted(free or ours)  # a list even when nothing is pinned: workers narrowed earlier widen again


class CpuPlacement:
    """``snippet_cpus`` looked up at most every ``REFRESH_S`` seconds (a call must not scan /proc)."""

    def __init__(self, setting: str | list[int], skip_marker: str) -> None:
        self.setting, self.skip_marker = setting, skip_marker
        self._checked = -REFRESH_S
        self._cpus: list[int] | None = None

    def current(self) -> list[int] | None:
        now = time.monotonic()
        if now - self._checked >= REFRESH_S:
            self._checked = now
            try:
                self._cpus = snippet_cpus(self.setting, self.skip_marker)
            except OSError:
                self._cpus = None
        return self._cpus
