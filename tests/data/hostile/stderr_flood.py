# ruff: noqa
"""Gigabytes of stderr."""

# expect: timeout
import sys

while True:
    sys.stderr.write("e" * 10000)
