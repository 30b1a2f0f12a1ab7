# ruff: noqa
"""Overwrite the project's data/ file."""

# expect: error
open("__CANARY_DIR__/project/data/seeds.jsonl", "w").write("{}")
