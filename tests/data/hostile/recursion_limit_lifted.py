# ruff: noqa
"""Recursion limit lifted, then unbounded recursion: a C stack overflow."""

# expect: killed|error|timeout
import sys

sys.setrecursionlimit(10**8)


def f(n):
    return f(n + 1) + 1


f(0)
