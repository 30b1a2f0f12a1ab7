# ruff: noqa
"""Symlink from the private dir to the key, then read through it."""

# expect: error
import os

os.symlink("__CANARY_DIR__/home/.ssh/id_rsa", "key")
print(open("key").read())
