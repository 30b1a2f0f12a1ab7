# ruff: noqa
"""sys.exit with a failure code."""

# expect: error
import sys

sys.exit(3)
