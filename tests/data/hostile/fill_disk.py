# ruff: noqa
"""Write a 1 GB file into its working directory."""

# expect: error
with open("big.bin", "wb") as fh:
    for _ in range(1024):
        fh.write(b"0" * 2**20)
