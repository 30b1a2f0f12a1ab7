# ruff: noqa
"""Read the process's stdin below input()."""

# expect: ok|error
import sys

print(repr(sys.stdin.read()))
