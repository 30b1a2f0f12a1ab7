# ruff: noqa
"""Signal the test process's whole process group."""

# expect: error
import os, signal

os.killpg(os.getpgid(__PARENT_PID__), signal.SIGUSR1)
