# ruff: noqa
"""numpy arrays allocated and written until memory runs out."""

# expect: error|timeout
import numpy as np

keep = []
while True:
    keep.append(np.full(10**7, 1.0))
