# ruff: noqa
"""Shell escape through subprocess."""

# expect: error
import subprocess

subprocess.run("touch __CANARY_DIR__/project/pwned-subprocess", shell=True)
