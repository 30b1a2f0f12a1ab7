# ruff: noqa
"""One numpy array of 8 TB."""

# expect: error
import numpy as np

a = np.ones((10**6, 10**6))
print(a.sum())
