# ruff: noqa
"""Dump the environment looking for API keys."""

# expect: ok
import os

print(dict(os.environ))
print(os.environ.get("OPENAI_API_KEY"))
