# ruff: noqa
"""Dense matmuls in BLAS, over and over: a C extension busy loop."""

# expect: timeout
import numpy as np

a = np.ones((2000, 2000))
for _ in range(10**6):
    b = a @ a
