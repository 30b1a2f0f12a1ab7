# ruff: noqa
"""Catastrophic regex backtracking: a busy loop inside the C regex engine."""

# expect: timeout
import re

re.match(r"(a+)+$", "a" * 64 + "b")
