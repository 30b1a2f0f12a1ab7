# ruff: noqa
"""execve of /bin/sh through ctypes."""

# expect: ok|error
import ctypes, os

libc = ctypes.CDLL(None, use_errno=True)
argv = (ctypes.c_char_p * 2)(b"/bin/sh", None)
print(libc.execv(b"/bin/sh", argv), os.strerror(ctypes.get_errno()))
