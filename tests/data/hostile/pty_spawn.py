# ruff: noqa
"""Interactive shell through the pty module."""

# expect: error
import pty

pty.spawn("/bin/sh")
