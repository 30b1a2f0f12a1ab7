# ruff: noqa
"""Ignore SIGTERM/SIGINT/SIGXCPU, then loop."""

# expect: timeout
import signal

for s in (signal.SIGTERM, signal.SIGINT, signal.SIGXCPU, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
while True:
    pass
