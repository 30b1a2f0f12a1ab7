# ruff: noqa
"""Wait for input() forever."""

# expect: error
name = input("name? ")
print(name)
