# ruff: noqa
"""ptrace-attach to pid 1 (the worker) to take it over."""

# expect: ok|error
import ctypes, os

libc = ctypes.CDLL(None, use_errno=True)
print(libc.ptrace(16, 1, None, None), os.strerror(ctypes.get_errno()))
