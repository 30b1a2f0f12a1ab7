# ruff: noqa
"""Leave a daemonized child behind (setsid, ignores SIGTERM)."""

# expect: ok
import os, signal, time

if os.fork() == 0:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.fork() == 0:
        time.sleep(600)
    os._exit(0)
print("parent done")
