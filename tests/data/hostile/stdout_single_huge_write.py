# ruff: noqa
"""300 MB written to stdout in one call."""

# expect: ok|timeout|error
import sys

sys.stdout.write("y" * 300_000_000)
