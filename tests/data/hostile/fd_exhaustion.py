# ruff: noqa
"""Open file descriptors until none are left."""

# expect: error
fds = [open("/dev/null") for _ in range(10**6)]
