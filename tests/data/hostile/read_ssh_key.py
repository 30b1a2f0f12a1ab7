# ruff: noqa
"""Read the user's SSH private key."""

# expect: error
print(open("__CANARY_DIR__/home/.ssh/id_rsa").read())
