"""Vectorised MinHash signatures, bit-for-bit the ones datasketch computes, and LSH band keys.

A text's shingles are its word unigrams and bigrams (``text.tokens``: numbers verbatim). Unigrams make the
Jaccard robust to a swapped, inserted or dropped word on short questions; bigrams keep word order in play.
Each shingle becomes a 32-bit hash (a cached 64-bit blake2b per token, mixed in numpy), and the signature is
datasketch's ``affine32`` scheme (``MinHash(num_perm, seed)``'s own permutations, ``fmix32`` then
``a*h + b mod 2**32``), min-reduced per text with ``np.minimum.reduceat``: one numpy pass per batch instead of
one Python call per shingle. ``to_lean_minhash`` turns a row back into a ``datasketch.LeanMinHash``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np

from pipeline.dedup.text import tokens

if TYPE_CHECKING:
    from datasketch import LeanMinHash

SCHEME = "affine32"
SHINGLES = "word unigrams + bigrams"
# LSH weights: candidates are verified on their signatures afterwards, so a false candidate only costs a
# comparison while a missed one is a missed duplicate: favour recall.
LSH_WEIGHTS = (0.1, 0.9)

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_BIGRAM_SALT = np.uint64(0x9E3779B97F4A7C15)
_EMPTY_SHINGLE = np.uint32(0x5BD1E995)
_TOKEN_CACHE_MAX = 2_000_000
_BLOCK_CELLS = 2_000_000  # ~8 MB of uint32 per block: stays in cache


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


class _TokenHashes(dict):
    """token → 64-bit blake2b hash whose lowest bit flags a number token (for ``number_keys``).

    A dict with ``__missing__`` so a batch maps through ``map(cache.__getitem__, ...)`` at C speed; Python's own
    ``hash`` is salted per process and would make signatures differ between runs and worker processes."""

    def __missing__(self, token: str) -> int:
        if len(self) >= _TOKEN_CACHE_MAX:
            self.clear()  # bounded memory on open vocabularies
        value = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
        value = (value & ~1) | (1 if token[:1].isdigit() else 0)
        self[token] = value
        return value


_TOKEN_CACHE = _TokenHashes()


def token_hashes(token_lists: Sequence[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """All tokens as uint64 hashes (flat) and each text's start offset (length ``n + 1``)."""
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    offsets = np.zeros(len(token_lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter(
        map(_TOKEN_CACHE.__getitem__, chain.from_iterable(token_lists)),
        dtype=np.uint64,
        count=int(offsets[-1]),
    )
    return flat, offsets


def number_keys(flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per text, a 63-bit hash of its multiset of number tokens (order-free: a sum of mixed hashes).

    Two texts can be near-duplicates only if these are equal: a changed number makes a different problem."""
    is_number = (flat & np.uint64(1)).astype(bool)
    mixed = np.where(is_number, _fmix64(flat ^ _BIGRAM_SALT), np.uint64(0))
    sums = np.zeros(len(offsets) - 1, dtype=np.uint64)
    nonempty = np.diff(offsets) > 0
    if flat.size:
        sums[nonempty] = np.add.reduceat(mixed, offsets[:-1][nonempty])
    return (sums >> np.uint64(1)).astype(np.int64)


def number_key(toks: list[str]) -> int:
    """``number_keys`` of one token list."""
    return int(number_keys(*token_hashes([toks]))[0])


def shingle_hashes(
    token_lists: Sequence[list[str]], hashed: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every text's unigram and bigram shingles, grouped per text.

    Returns ``(hashes, starts)``: text ``i``'s shingles are ``hashes[starts[i]:starts[i + 1]]``. A text with no
    tokens gets one fixed "empty" shingle so every text has a non-empty set (and empty texts match each other).
    """
    flat, offsets = hashed if hashed is not None else token_hashes(token_lists)
    n = len(token_lists)
    lengths = np.diff(offsets)
    uni = (_fmix64(flat) >> np.uint64(32)).astype(np.uint32)
    # bigram i = (token i, token i+1) where both belong to the same text
    if flat.size > 1:
        same_doc = np.ones(flat.size - 1, dtype=bool)
        ends = offsets[1:-1][lengths[:-1] > 0] - 1 if n > 1 else np.empty(0, dtype=np.int64)
        same_doc[ends[ends < flat.size - 1]] = False
        big_all = _fmix64(flat[:-1] * _BIGRAM_SALT + (flat[1:] ^ (flat[1:] >> np.uint64(29))))
        big = (big_all[same_doc] >> np.uint64(32)).astype(np.uint32)
        big_doc = np.searchsorted(offsets, np.nonzero(same_doc)[0], side="right") - 1
    else:
        big = np.empty(0, dtype=np.uint32)
        big_doc = np.empty(0, dtype=np.int64)
    uni_doc = np.repeat(np.arange(n), lengths)
    empty = np.nonzero(lengths == 0)[0]
    docs = np.concatenate([uni_doc, big_doc, empty])
    hashes = np.concatenate([uni, big, np.full(empty.size, _EMPTY_SHINGLE, dtype=np.uint32)])
    order = np.argsort(docs, kind="stable")
    counts = np.bincount(docs, minlength=n)
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    return hashes[order], starts


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's own permutation parameters ``(a, b)`` for ``MinHash(num_perm, seed)`` (affine32)."""
    from datasketch import MinHash  # imported lazily: hashing workers need only numpy

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    return np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)


def minhash_from_shingles(
    hashes: np.ndarray,
    starts: np.ndarray,
    num_perm: int,
    seed: int,
    perms: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Signatures ``(n, num_perm)`` uint32 from grouped 32-bit shingle hashes; equals datasketch's
    ``MinHash(num_perm, seed, hashfunc=identity).update_batch(hashes_i).hashvalues`` for each text.
    ``perms`` (from ``permutations``) spares a worker process from importing datasketch."""
    a, b = perms if perms is not None else permutations(num_perm, seed)
    n = starts.size - 1
    out = np.empty((n, num_perm), dtype=np.uint32)
    if n == 0:
        return out
    mixed = _fmix32(hashes.astype(np.uint32))
    # Permutations × shingles in a reused (num_perm, block) buffer: big temporaries cost more in page faults
    # than in arithmetic. Blocks end on text boundaries so each block min-reduces whole texts.
    block = max(_BLOCK_CELLS // num_perm, 1)
    buf = np.empty((num_perm, block), dtype=np.uint32)
    doc = 0
    while doc < n:
        end_doc = int(np.searchsorted(starts, starts[doc] + block, side="right")) - 1
        end_doc = min(max(end_doc, doc + 1), n)
        lo, hi = int(starts[doc]), int(starts[end_doc])
        if hi - lo > buf.shape[1]:
            buf = np.empty((num_perm, hi - lo), dtype=np.uint32)
        cells = buf[:, : hi - lo]
        np.multiply(a[:, None], mixed[None, lo:hi], out=cells)
        cells += b[:, None]
        out[doc:end_doc] = np.minimum.reduceat(cells, starts[doc:end_doc] - lo, axis=1).T
        doc = end_doc
    return out


def signatures(texts: Sequence[str], num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """MinHash signatures of ``texts`` (``(len(texts), num_perm)`` uint32)."""
    hashes, starts = shingle_hashes([tokens(t) for t in texts])
    return minhash_from_shingles(hashes, starts, num_perm, seed)


def to_lean_minhash(signature: np.ndarray, seed: int = 1) -> LeanMinHash:
    """A datasketch ``LeanMinHash`` holding one signature row (for ``MinHashLSH`` and ``jaccard``)."""
    from datasketch import LeanMinHash

    return LeanMinHash(seed=seed, hashvalues=np.asarray(signature, dtype=np.uint32), scheme=SCHEME)


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands and rows per band for ``threshold``: datasketch's optimiser, weighted towards recall."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if num_perm < 2:
        raise ValueError(f"num_perm must be >= 2, got {num_perm}")
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, *LSH_WEIGHTS)


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (text, band): equal keys ⇔ (almost surely) equal signature slices."""
    n = sigs.shape[0]
    keys = np.empty((n, bands), dtype=np.uint64)
    for band in range(bands):
        h = np.full(n, ((band + 1) * int(_BIGRAM_SALT)) & int(_M64), dtype=np.uint64)
        for col in range(band * rows, (band + 1) * rows):
            h = _fmix64(h ^ sigs[:, col].astype(np.uint64))
        keys[:, band] = h
    return keys
