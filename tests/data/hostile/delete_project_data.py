# ruff: noqa
"""Delete the project's data/ directory."""

# expect: error
import shutil

shutil.rmtree("__CANARY_DIR__/project/data")
