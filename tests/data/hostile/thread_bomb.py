# ruff: noqa
"""Thousands of threads."""

# expect: error|ok
import threading, time

for _ in range(100000):
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
