"""The sandbox API the code_tir stage builds on: results, truncation, state carry-over, concurrency, recovery."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import pytest
from pydantic import ValidationError

from pipeline.sandbox import ExecResult, Sandbox, SandboxConfig
from pipeline.sandbox.worker import middle_truncate

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxConfig(workers=2, timeout_s=2.0)) as sb:
        yield sb


def test_stdout_and_preloaded_libraries(sandbox):
    result = sandbox.run(
        "import sympy, numpy as np\nx = sympy.Symbol('x')\nprint(sympy.factor(x**2 - 1))\n"
        "print(int(np.arange(5).sum()))"
    )
    assert result == ExecResult("ok", "(x - 1)*(x + 1)\n10", result.seconds)
    assert 0 < result.seconds < 2


def test_error_gives_last_traceback_line(sandbox):
    result = sandbox.run("print('partial')\nimport math\nmath.sqrt(-1)")
    assert (result.status, result.output) == ("error", "ValueError: math domain error")


def test_syntax_error_is_an_error(sandbox):
    result = sandbox.run("def f(:\n  pass")
    assert result.status == "error" and result.output.startswith("SyntaxError")


def test_timeout(sandbox):
    started = time.monotonic()
    result = sandbox.run("import time\ntime.sleep(30)")
    assert result.status == "timeout" and "TimeoutError" in result.output
    assert time.monotonic() - started < 2.0 + 3


def test_output_is_middle_truncated(sandbox):
    result = sandbox.run("print('START' + 'x' * 5000 + 'END')")
    assert result.status == "ok" and len(result.output) <= 400
    assert result.output.startswith("STARTxx") and result.output.endswith("xxEND")
    assert "characters omitted" in result.output


def test_middle_truncate():
    assert middle_truncate("short", 400) == "short"
    text = "a" * 300 + "b" * 300
    cut = middle_truncate(text, 100)
    assert len(cut) <= 100 and cut.startswith("a") and cut.endswith("b") and "500 characters omitted" in cut


def test_fresh_state_per_call_by_default(sandbox):
    assert sandbox.run("secret_value = 41", session="t1").status == "ok"
    result = sandbox.run("print(secret_value + 1)", session="t1")
    assert (result.status, result.output) == ("error", "NameError: name 'secret_value' is not defined")


def test_carry_state_replays_earlier_blocks():
    with Sandbox(SandboxConfig(workers=1, timeout_s=2.0, carry_state=True, preload=("math",))) as sb:
        first = sb.run("x = 40\nprint('first')", session="a")
        assert (first.status, first.output) == ("ok", "first")
        assert sb.run("y = x + 1", session="a").status == "ok"
        assert sb.run("import time\ntime.sleep(30)", session="a").status == "timeout"  # not replayed later
        assert sb.run("undefined_name", session="a").status == "error"  # replayed, its error swallowed
        result = sb.run("print(x + y - 39)", session="a")
        assert (result.status, result.output) == ("ok", "42")  # earlier outputs are not repeated
        assert sb.run("print(x)", session="b").status == "error"  # sessions are separate
        sb.end_session("a")
        assert sb.run("print(x)", session="a").status == "error"


def test_many_threads_share_the_pool(sandbox):
    results: dict[int, ExecResult] = {}

    def call(i: int) -> None:
        results[i] = sandbox.run(f"print({i} * {i})")

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert {i: (r.status, r.output) for i, r in results.items()} == {i: ("ok", str(i * i)) for i in range(12)}


def test_killed_worker_is_replaced(sandbox):
    killed = sandbox.worker_pids()
    for pid in killed:
        os.killpg(pid, signal.SIGKILL)  # the workers' own process groups, started by this sandbox
    statuses = {sandbox.run("print(1)").status for _ in range(2)}
    assert statuses <= {"killed", "ok"}
    after = sandbox.run("print(2)")
    assert (after.status, after.output) == ("ok", "2")
    assert all(pid not in sandbox.worker_pids() for pid in killed)


def test_config_rejects_unknown_keys():
    with pytest.raises(ValidationError):
        SandboxConfig(timeout=5)
    assert SandboxConfig().timeout_s == 5.0 and SandboxConfig().max_output_chars == 400


def test_closed_sandbox_refuses():
    sb = Sandbox(SandboxConfig(workers=1, preload=()))
    sb.close()
    with pytest.raises(RuntimeError):
        sb.run("print(1)")


def test_cli_prints_one_json_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app

    snippet = tmp_path / "snippet.py"
    snippet.write_text("import os\nprint(os.environ.get('OPENAI_API_KEY'))\nprint(6 * 7)\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-should-not-leak")
    outcome = CliRunner().invoke(app, ["sandbox", "run", str(snippet)])
    assert outcome.exit_code == 0, outcome.output
    lines = outcome.stdout.strip().splitlines()
    assert len(lines) == 1
    payload = json.loads(lines[0])
    assert set(payload) == {"status", "output", "seconds"}
    assert (payload["status"], payload["output"]) == ("ok", "None\n42")


def test_fallback_without_namespaces_warns_once_and_still_protects(tmp_path, caplog, monkeypatch):
    """Where namespaces are refused, Landlock alone still keeps files, sockets and secrets out of reach."""
    from pipeline.sandbox import pool
    from pipeline.sandbox.worker import SYS_LANDLOCK_CREATE_RULESET, libc

    if sys.platform != "linux" or libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, 1) < 1:
        pytest.skip("needs Landlock")
    monkeypatch.setattr(pool, "_warned", False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fallback-should-not-leak")
    canary = tmp_path / "canary.txt"
    canary.write_text("keep me")
    config = SandboxConfig(workers=1, timeout_s=2.0, namespaces=False, preload=("math",))
    with caplog.at_level("WARNING", logger="pipeline.sandbox"), Sandbox(config) as sb, Sandbox(config) as sb2:
        assert "namespaces" in " ".join(sb.mechanisms()["missing"]) and sb2.mechanisms()
        assert sb.run(f"print(open({str(canary)!r}).read())").status == "error"
        assert sb.run(f"open({str(canary)!r}, 'w').write('gone')").status == "error"
        assert (
            sb.run("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)").status == "error"
        )
        assert "sk-fallback" not in sb.run("import os\nprint(dict(os.environ))").output
        assert sb.run("open('scratch.txt', 'w').write('x')\nprint(open('scratch.txt').read())").output == "x"
    assert canary.read_text() == "keep me"
    assert len([r for r in caplog.records if r.name == "pipeline.sandbox"]) == 1


def test_run_async(sandbox):
    import asyncio

    async def three() -> list[ExecResult]:
        return await asyncio.gather(*(sandbox.run_async(f"print({i} + 1)") for i in range(3)))

    assert [(r.status, r.output) for r in asyncio.run(three())] == [("ok", "1"), ("ok", "2"), ("ok", "3")]


def test_forked_process_gets_its_own_workers(sandbox):
    """A process pool forked after the sandbox was made must not share the parent's worker pipes."""
    parent_workers = sandbox.worker_pids()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = False
        try:
            result = sandbox.run("print(5 * 5)")
            ok = (result.status, result.output) == ("ok", "25") and not set(sandbox.worker_pids()) & set(
                parent_workers
            )
            sandbox.close()
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sandbox.run("print(6)").output == "6" and set(sandbox.worker_pids()) == set(parent_workers)
