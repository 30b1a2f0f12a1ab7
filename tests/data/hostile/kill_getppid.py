# ruff: noqa
"""SIGKILL to os.getppid()."""

# expect: ok|error
import os, signal

os.kill(os.getppid(), signal.SIGKILL)
print("still here")
