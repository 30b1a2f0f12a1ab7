# ruff: noqa
"""Sleeping far past the timeout inside one C call."""

# expect: timeout
import time

time.sleep(3600)
