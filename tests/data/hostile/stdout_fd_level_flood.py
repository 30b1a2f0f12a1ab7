# ruff: noqa
"""Output written with os.write on fd 1, below Python's sys.stdout."""

# expect: timeout
import os

chunk = b"z" * 65536
while True:
    os.write(1, chunk)
