# ruff: noqa
"""Raise its own memory limit."""

# expect: error
import resource

resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
