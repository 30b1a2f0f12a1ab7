# ruff: noqa
"""Gigabytes of stdout, line by line."""

# expect: timeout
while True:
    print("x" * 10000)
