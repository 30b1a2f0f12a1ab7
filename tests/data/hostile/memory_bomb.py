# ruff: noqa
"""Allocate until the machine runs out of memory."""

# expect: error|timeout
blocks = []
while True:
    blocks.append(bytearray(10**7))
