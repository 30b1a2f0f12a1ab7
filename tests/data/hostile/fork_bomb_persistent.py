# ruff: noqa
"""Fork bomb that ignores fork failures and keeps trying."""

# expect: timeout|error
import os

while True:
    try:
        os.fork()
    except OSError:
        pass
