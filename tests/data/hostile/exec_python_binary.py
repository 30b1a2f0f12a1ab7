# ruff: noqa
"""Re-exec the Python interpreter with os.execv."""

# expect: error
import os, sys

os.execv(sys.executable, [sys.executable, "-c", "print(1)"])
