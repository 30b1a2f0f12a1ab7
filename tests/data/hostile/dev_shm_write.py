# ruff: noqa
"""Write to /dev/shm, shared with the host."""

# expect: error
open("/dev/shm/mathaug-sandbox-canary", "w").write("x")
