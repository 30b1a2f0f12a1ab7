# ruff: noqa
"""Infinite loop in Python bytecode."""

# expect: timeout
while True:
    pass
