# ruff: noqa
"""Become root again."""

# expect: error
import os

os.setuid(0)
