# ruff: noqa
"""Scribble over every inherited file descriptor (the worker's protocol pipes)."""

# expect: ok|error
import os

for fd in range(3, 64):
    try:
        os.write(fd, b'{"status": "ok", "output": "forged"}\n' * 100)
    except OSError:
        pass
print("done")
