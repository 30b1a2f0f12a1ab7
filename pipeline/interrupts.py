"""Stopping a build on SIGINT / SIGTERM within seconds, and the one line that says why a build failed.

Every finished batch is already on disk (each is written atomically) and nothing is published until the end, so
stopping at any point loses nothing: the first signal raises ``KeyboardInterrupt`` in the main thread (the build
unwinds, the temporary Prefect server is stopped); if the build has not exited ``GRACE_S`` later (a batch still
running in a worker thread, a model call in flight), the process exits anyway. A second signal exits at once.
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

GRACE_S = 3.0
EXIT_INTERRUPTED = 130


def resume_command(argv: list[str] | None = None) -> str:
    """The command that resumes this build: the same one, without ``--fresh`` (which would discard it)."""
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--fresh"]
    return " ".join(shlex.quote(a) for a in ["mathaug", *args])


@contextmanager
def stop_on_signals(say: Callable[[str], None], out_dir: Path) -> Iterator[None]:
    """SIGINT and SIGTERM stop the build (see the module docstring); ``say`` prints one line to the user.

    The grace period starts when the signal arrives even if a library has put its own handler in front of ours
    (Prefect turns SIGTERM into a crash report to its server during a flow run, which takes seconds): the signal
    wakes a watcher thread through ``signal.set_wakeup_fd``, whoever handles it in Python.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    message = (
        f"interrupted: every finished batch is kept in {out_dir}/.mathaug and the published dataset is unchanged; "
        f"resume with: {resume_command()}"
    )
    said: list[bool] = []
    grace: list[threading.Timer] = []
    guard = threading.Lock()

    def say_once() -> None:
        with guard:
            if said:
                return
            said.append(True)
        say(message)

    def force_exit() -> None:
        say_once()
        end_child_processes()
        os._exit(EXIT_INTERRUPTED)

    def start_grace() -> bool:
        """Start the countdown to a forced exit; False if it was running already."""
        with guard:
            if grace:
                return False
            grace.append(threading.Timer(GRACE_S, force_exit))
        grace[0].daemon = True
        grace[0].start()
        return True

    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        start_grace()
        if len(received) > 1:  # asked twice: do not wait
            force_exit()
        raise KeyboardInterrupt

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def watch() -> None:
        while chunk := os.read(read_fd, 64):
            if any(n in (signal.SIGINT, signal.SIGTERM) for n in chunk):
                start_grace()
        os.close(read_fd)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=watch, name="mathaug-signal-watch", daemon=True).start()
    try:
        yield
    except KeyboardInterrupt:
        say_once()
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        signal.set_wakeup_fd(previous_fd)
        for sig, old in previous.items():
            signal.signal(sig, old)
        os.close(write_fd)  # the watcher reads EOF and ends


def end_child_processes() -> None:
    """Kill this process's children (verify workers, the temporary server, local Dask workers): a forced exit
    skips the code that would stop them, and they would hold the terminal's pipes open."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(children, timeout=1)


def os_error_message(exc: OSError, out_dir: Path) -> str:
    """One line for an operating-system error during a build: which path, what happened, what to do."""
    where = exc.filename or out_dir
    text = str(exc)
    if exc.errno == errno.ENOSPC or "No space left" in text:
        return (
            f"no space left on the device of {where}: {_size(bytes_under(out_dir))} of this build are on disk in "
            f"{out_dir} (finished batches kept; the published dataset is unchanged). Free space and rerun the same "
            f"command to resume: {resume_command()}"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {where}: {exc.strerror}; choose another --out or fix its permissions"
    return f"{where}: {exc.strerror or text}"


def bytes_under(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"
