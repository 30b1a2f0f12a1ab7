# ruff: noqa
"""Add an attacker key to ~/.ssh/authorized_keys."""

# expect: error
with open("__CANARY_DIR__/home/.ssh/authorized_keys", "a") as fh:
    fh.write("ssh-ed25519 AAAA attacker\n")
