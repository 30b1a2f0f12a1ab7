# ruff: noqa
"""Dereference a null pointer through ctypes."""

# expect: killed
import ctypes

ctypes.string_at(0)
