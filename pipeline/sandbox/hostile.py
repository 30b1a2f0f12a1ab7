"""Probe harness for the hostile-code suite: plant canaries, listen, run a snippet, list what escaped.

Shared by tests/test_sandbox_hostile.py (CI) and bench/sandbox_hostile.py (the table in bench/RESULTS.md) so
both judge containment the same way. Each check can fail: canaries are hashed, listeners count connections,
the parent counts SIGUSR1s, and leftover processes are looked up from outside the sandbox.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

from pipeline.sandbox.pool import ExecResult, Sandbox

SECRET = "sk-canary-" + "7f3a9c" * 6
EXPECT = re.compile(r"^# expect: (.+)$", re.MULTILINE)
SHM_CANARY = Path("/dev/shm/mathaug-sandbox-canary")


@dataclass(frozen=True)
class Snippet:
    name: str
    description: str
    expect: frozenset[str]
    template: str


def load_snippets(directory: Path) -> list[Snippet]:
    """The ``*.py`` files of `directory`, each with a docstring and a ``# expect: a|b`` line."""
    snippets = []
    for path in sorted(directory.glob("*.py")):
        text = path.read_text()
        doc = re.search(r'"""(.+?)"""', text, re.DOTALL)
        expect = EXPECT.search(text)
        if not doc or not expect:
            raise ValueError(f"{path}: needs a docstring and a '# expect:' line")
        snippets.append(Snippet(path.stem, doc.group(1).strip(), frozenset(expect.group(1).split("|")), text))
    return snippets


class Listener:
    """A real socket on 127.0.0.1. Connections and datagrams wait in the kernel's queue until `count` drains
    them, so nothing that arrived during a snippet can be missed (no thread, no race)."""

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            self.sock.listen(64)
        self.sock.setblocking(False)
        self.hits = 0

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def count(self) -> int:
        while True:
            try:
                if self.kind == socket.SOCK_STREAM:
                    self.sock.accept()[0].close()
                else:
                    self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return self.hits
            self.hits += 1

    def close(self) -> None:
        self.sock.close()


class Harness:
    """Canaries in a temporary HOME and project, two listeners, a SIGUSR1 counter, an API key in our env.

    Must be created on the main thread (it installs a signal handler).
    """

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="mathaug-hostile-")
        self.root = Path(self.tmp.name)
        (self.root / "home" / ".ssh").mkdir(parents=True)
        (self.root / "project" / "data").mkdir(parents=True)
        (self.root / "home" / ".ssh" / "id_rsa").write_text("-----BEGIN CANARY KEY-----\n" + SECRET + "\n")
        (self.root / "home" / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA owner\n")
        (self.root / "project" / "data" / "seeds.jsonl").write_text('{"problem": "1+1", "answer": "2"}\n')
        self.tcp = Listener(socket.SOCK_STREAM)
        self.udp = Listener(socket.SOCK_DGRAM)
        self.signals = 0
        self.previous_handler = signal.signal(signal.SIGUSR1, self._count_signal)
        self.previous_key = os.environ.get("OPENAI_API_KEY")
        os.environ["OPENAI_API_KEY"] = SECRET
        self.tree = self.snapshot()
        # Values that appear in this process's /proc/self/environ (what /proc/<pid>/environ would leak).
        self.environ_markers = [
            v for v in (os.environ.get("PATH"), os.environ.get("HOME")) if v and len(v) > 6
        ]

    def _count_signal(self, _signum: int, _frame: object) -> None:
        self.signals += 1

    def snapshot(self) -> dict[str, str]:
        files = {}
        for path in sorted(self.root.rglob("*")):
            rel = str(path.relative_to(self.root))
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        return files

    def render(self, snippet: Snippet) -> str:
        return (
            snippet.template.replace("__CANARY_DIR__", str(self.root))
            .replace("__PARENT_PID__", str(os.getpid()))
            .replace("__TCP_PORT__", str(self.tcp.port))
            .replace("__UDP_PORT__", str(self.udp.port))
        )

    def violations(self, sandbox: Sandbox, snippet: Snippet, result: ExecResult) -> list[str]:
        """Everything that shows the snippet was not contained (empty when it was)."""
        found = []
        if result.status not in snippet.expect:
            found.append(
                f"status {result.status!r} not in {sorted(snippet.expect)} (output {result.output!r})"
            )
        if self.snapshot() != self.tree:
            found.append("canary files changed")
        if self.signals:
            found.append(f"parent received {self.signals} SIGUSR1")
        tcp_hits, udp_hits = self.tcp.count(), self.udp.count()  # both drained, every time
        if tcp_hits or udp_hits:
            found.append(f"listeners reached: tcp {self.tcp.hits}, udp {self.udp.hits}")
        leaks = [m for m in (SECRET, *self.environ_markers) if m in result.output]
        if leaks:
            found.append("secret or parent environment in output")
        if len(result.output) > sandbox.config.max_output_chars:
            found.append(f"output of {len(result.output)} characters")
        if SHM_CANARY.exists():
            found.append(f"{SHM_CANARY} created")
        if result.seconds > sandbox.config.timeout_s + 5:
            found.append(f"took {result.seconds:.1f} s")
        leftovers = leftover_processes(sandbox)
        if leftovers:
            found.append(f"processes left behind: {leftovers}")
        follow_up = sandbox.run("print(6 * 7)")
        if (follow_up.status, follow_up.output) != ("ok", "42"):
            found.append(f"sandbox did not serve the next call: {follow_up}")
        return found

    def close(self) -> None:
        signal.signal(signal.SIGUSR1, self.previous_handler)
        if self.previous_key is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = self.previous_key
        self.tcp.close()
        self.udp.close()
        self.tmp.cleanup()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def leftover_processes(sandbox: Sandbox) -> list[int]:
    """Processes under the workers other than each worker's own inner process (pid 1 of its namespace)."""
    extra = []
    own = 1 if sandbox.mechanisms()["enforced"].get("pid_namespace") else 0
    for pid in sandbox.worker_pids():
        try:
            children = psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        direct = [c for c in children if c.ppid() == pid]
        extra += [c.pid for c in children if c not in direct[:own]]
    return extra
