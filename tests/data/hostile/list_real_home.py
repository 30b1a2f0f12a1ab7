# ruff: noqa
"""List the real home directory and /root for secrets."""

# expect: ok|error
import os

for d in ("/root", os.path.expanduser("~"), "__CANARY_DIR__/home"):
    try:
        print(d, os.listdir(d))
    except OSError as exc:
        print(d, exc)
