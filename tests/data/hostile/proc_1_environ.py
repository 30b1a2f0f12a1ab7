# ruff: noqa
"""Read the environment of pid 1 and of every visible process."""

# expect: ok|error
import os

for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        print(pid, open(f"/proc/{pid}/environ", "rb").read())
    except OSError as exc:
        print(pid, exc)
