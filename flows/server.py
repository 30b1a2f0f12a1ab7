"""The temporary Prefect server of a ``mathaug build`` that has no ``PREFECT_API_URL``: started by us, dies with us.

Prefect's own temporary server is a uvicorn child that outlives a killed build (its parent pid becomes 1, and it
keeps its port and the SQLite database). This one is the same uvicorn app, started with ``PR_SET_PDEATHSIG``
(Linux): the kernel kills it when the build's process dies, however it dies, SIGKILL included. It also runs with
analytics off (Prefect's telemetry otherwise logs an ERROR on every start on a machine without network), unless
the user set ``PREFECT_SERVER_ANALYTICS_ENABLED`` themselves.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from pipeline.io.rundir import BuildError

PR_SET_PDEATHSIG = 1


class ServerStartError(BuildError):
    """The temporary server did not answer in time (its own output is in the message)."""


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask the kernel for SIGKILL when the parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the atexit stop below still runs on a normal exit
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_environment() -> dict[str, str]:
    """The child's environment: this process's Prefect settings, the UI off, telemetry off unless chosen."""
    from prefect.settings import get_current_settings

    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True)}
    env.update({"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"})
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.pop("PREFECT_API_URL", None)
    return env


@contextlib.contextmanager
def temporary_server(timeout_s: float) -> Iterator[str]:
    """Start the server, yield its API URL, stop it (SIGTERM, then SIGKILL after 5 s)."""
    import httpx
    import prefect

    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    command = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
        "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "error", "--lifespan", "on",
    ]
    log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server never blocks on a full pipe
    proc = subprocess.Popen(
        command, env=server_environment(), preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl runs there
        stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")
                raise ServerStartError(
                    f"the temporary Prefect server exited with code {proc.returncode} before answering: "
                    f"{err.strip().splitlines()[-1] if err.strip() else 'no output'} (or build with --direct)"
                )
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"the temporary Prefect server did not answer on {url} within {timeout_s:.0f}s "
                    "(set PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS higher, or build with --direct)"
                )
            time.sleep(0.2)
        yield url
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn closes its database), then SIGKILL if it has not exited in 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
