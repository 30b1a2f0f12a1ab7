# ruff: noqa
"""New user+mount namespace, then unmount the covers to reveal hidden dirs."""

# expect: ok|error
import ctypes, os

libc = ctypes.CDLL(None, use_errno=True)
print("unshare", libc.unshare(0x10000000 | 0x00020000), os.strerror(ctypes.get_errno()))
for path in (b"/usr/bin", b"/tmp", b"/"):
    print(path, libc.umount2(path, 2), os.strerror(ctypes.get_errno()))
print(os.listdir("/usr/bin"))
open("__CANARY_DIR__/project/pwned-ns", "w").write("x")
