# ruff: noqa
"""Classic fork bomb."""

# expect: error|timeout
import os

while True:
    os.fork()
