# ruff: noqa
"""Create a new file next to the project."""

# expect: error
open("__CANARY_DIR__/project/pwned.txt", "w").write("pwned")
