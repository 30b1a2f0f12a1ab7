# ruff: noqa
"""libc system() called through ctypes, past every Python-level check."""

# expect: ok|error
import ctypes

print(ctypes.CDLL(None).system(b"touch __CANARY_DIR__/project/pwned-ctypes"))
