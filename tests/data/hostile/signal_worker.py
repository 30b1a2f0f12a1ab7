# ruff: noqa
"""Signal the worker (pid 1 of the sandbox) with everything, to take the pool down."""

# expect: ok|error
import os, signal

for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGSTOP, signal.SIGKILL):
    os.kill(os.getppid(), sig)
print("worker", os.getppid(), "still answering")
