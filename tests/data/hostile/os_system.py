# ruff: noqa
"""Shell escape through os.system."""

# expect: error
import os

os.system("touch __CANARY_DIR__/project/pwned-system")
