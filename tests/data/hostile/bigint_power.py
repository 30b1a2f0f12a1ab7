# ruff: noqa
"""A huge integer power: C-level bignum work that ignores Python signals."""

# expect: timeout|error
x = pow(10, 10**9)
print(x % 7)
