"""Hashed word n-grams (64-bit) over ``text.tokens``, vectorised per batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.dedup.minhash import _fmix64, token_hashes

_SALT = np.uint64(0x2545F4914F6CDD1D)


def ngram_hashes(token_lists: Sequence[list[str]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(hashes, text_index)``: one uint64 per n-gram of each text (texts shorter than ``n`` have none)."""
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    flat, offsets = token_hashes(token_lists)
    lengths = np.diff(offsets)
    counts = np.maximum(lengths - n + 1, 0)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    text_index = np.repeat(np.arange(len(token_lists)), counts)
    # start of each n-gram = its text's offset + rank inside the text
    first = np.zeros(len(token_lists) + 1, dtype=np.int64)
    np.cumsum(counts, out=first[1:])
    starts = offsets[:-1][text_index] + (np.arange(total) - first[:-1][text_index])
    h = np.full(total, _SALT, dtype=np.uint64)
    for j in range(n):
        h = _fmix64(h ^ flat[starts + j]) + np.uint64(j)
    return h, text_index
