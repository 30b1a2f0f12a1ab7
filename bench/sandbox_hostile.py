"""Sandbox bench (issue 18): the hostile-code table and per-call latency, in one run.

Runs every snippet of tests/data/hostile with the stage's default limits (5 s, 1 GiB, 8 processes, 400
characters) and judges containment exactly as the CI test does (pipeline.sandbox.hostile.Harness). Then
measures per-call latency (median / p95) of a trivial call and of a sympy call, and the throughput of the
pool under concurrent callers. Prints Markdown for bench/RESULTS.md.

    python bench/sandbox_hostile.py [--timeout 5] [--trivial 300] [--sympy 60] [--out table.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.sandbox import Sandbox, SandboxConfig  # noqa: E402
from pipeline.sandbox.hostile import Harness, load_snippets  # noqa: E402

HOSTILE_DIR = ROOT / "tests" / "data" / "hostile"
TRIVIAL = "print(1 + 1)"
SYMPY = "import sympy as sp\nx = sp.symbols('x')\nprint(sp.integrate(x**2 * sp.sin(x), x))\nprint(sp.solve(x**2 - 5*x + 6, x))"


def cell(text: str, width: int = 70) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def hostile_table(timeout_s: float) -> tuple[list[str], int, int]:
    snippets = load_snippets(HOSTILE_DIR)
    lines = [
        "| snippet | attack | status | output (first 70 chars) | s | contained |",
        "|---|---|---|---|---|---|",
    ]
    contained = 0
    with Harness() as harness, Sandbox(SandboxConfig(workers=1, timeout_s=timeout_s)) as sandbox:
        mechanisms = sandbox.mechanisms()
        for snippet in snippets:
            result = sandbox.run(harness.render(snippet))
            problems = harness.violations(sandbox, snippet, result)
            contained += not problems
            verdict = "yes" if not problems else "NO: " + cell("; ".join(problems), 60)
            lines.append(
                f"| `{snippet.name}` | {cell(snippet.description, 60)} | {result.status} | "
                f"`{cell(result.output) or ' '}` | {result.seconds:.2f} | {verdict} |"
            )
    lines.append("")
    lines.append(f"layers enforced: `{mechanisms['enforced']}`; missing: `{mechanisms['missing'] or 'none'}`")
    return lines, contained, len(snippets)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def unsandboxed_ms(code: str, n: int) -> list[float]:
    """The same code in a forked copy of this (warm) interpreter, no isolation: the floor for a fresh state."""
    import sympy  # noqa: F401 — warm, as in the workers

    wall = []
    for _ in range(n):
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            exec(compile(code, "<code>", "exec"), {"__name__": "__main__"})
            os._exit(0)
        os.waitpid(pid, 0)
        wall.append((time.perf_counter() - t0) * 1000)
    return wall


def latency(n_trivial: int, n_sympy: int) -> list[str]:
    lines = ["| call | n | median ms | p95 ms | unsandboxed fork, median ms |", "|---|---|---|---|---|"]
    started = time.monotonic()
    with Sandbox(SandboxConfig(workers=2)) as sandbox:
        sandbox.mechanisms()  # waits for the first worker
        startup = time.monotonic() - started
        for name, code, n in (
            ("trivial `print(1 + 1)`", TRIVIAL, n_trivial),
            ("sympy integrate + solve", SYMPY, n_sympy),
        ):
            sandbox.run(code)
            wall = []
            for _ in range(n):
                t0 = time.perf_counter()
                result = sandbox.run(code)
                wall.append((time.perf_counter() - t0) * 1000)
                assert result.status == "ok", result
            floor = statistics.median(unsandboxed_ms(code, max(10, n // 3)))
            lines.append(
                f"| {name} | {n} | {statistics.median(wall):.1f} | {percentile(wall, 0.95):.1f} | {floor:.1f} |"
            )
        calls, threads = 400, 8
        done = []

        def caller() -> None:
            for _ in range(calls // threads):
                done.append(sandbox.run(TRIVIAL).status)

        t0 = time.perf_counter()
        pool = [threading.Thread(target=caller) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - t0
    lines.append("")
    lines.append(
        f"worker start (interpreter + numpy + sympy + isolation): {startup:.2f} s; "
        f"{threads} threads x {calls // threads} trivial calls on 2 workers: {len(done) / elapsed:.0f} calls/s "
        f"({done.count('ok')}/{len(done)} ok)"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--trivial", type=int, default=300)
    parser.add_argument("--sympy", type=int, default=60)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    table, contained, total = hostile_table(args.timeout)
    lines = [
        f"hostile snippets contained: {contained}/{total} (timeout {args.timeout:g} s)",
        "",
        *table,
        "",
        *latency(args.trivial, args.sympy),
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if contained != total:
        sys.exit(1)


if __name__ == "__main__":
    main()
