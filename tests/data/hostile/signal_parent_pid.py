# ruff: noqa
"""Signal the test process by its pid."""

# expect: error
import os, signal

os.kill(__PARENT_PID__, signal.SIGUSR1)
