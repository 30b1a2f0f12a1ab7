# ruff: noqa
"""os._exit, skipping every handler."""

# expect: error
import os

print("bye", flush=True)
os._exit(7)
