# ruff: noqa
"""kill(-1): signal every process it may."""

# expect: ok|error
import os, signal

os.kill(-1, signal.SIGUSR1)
os.kill(-1, signal.SIGKILL)
