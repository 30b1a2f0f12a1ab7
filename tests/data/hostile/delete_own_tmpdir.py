# ruff: noqa
"""Delete its own working directory."""

# expect: error|ok
import os, shutil

open("junk", "w").write("x")
shutil.rmtree(os.getcwd())
os.rmdir(os.getcwd())
