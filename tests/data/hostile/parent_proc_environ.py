# ruff: noqa
"""Read the parent's environment through /proc/<pid>/environ."""

# expect: error
print(open("/proc/__PARENT_PID__/environ", "rb").read())
