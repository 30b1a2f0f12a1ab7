"""Near-duplicate clustering over signatures: LSH banding in numpy, verified pairs, union-find.

Why not ``datasketch.MinHashLSH`` here: its dict storage keeps a Python set entry per (key, band) plus a list of
band hashes per key, about 1.5 kB per row at 14 bands, so a million rows need gigabytes; its Redis and Cassandra
storages need a server. The same banding (bands and rows from datasketch's optimiser, ``minhash.lsh_params``)
done as sorted ``uint64`` arrays costs 8 bytes per (row, band) and works on memory-mapped signatures.

Two rows are near-duplicates when their estimated Jaccard is ≥ the threshold **and** they state the same
numbers (``minhash.number_keys``), so a GSM-Symbolic variant never folds into its seed. Clusters are the connected
components of verified pairs. Within an LSH bucket rows are ordered by a content key (``tiebreak``), never by
input position, and compared with up to ``WINDOW`` neighbours (all pairs in buckets of ≤ ``WINDOW + 1`` rows),
so the clusters depend only on the set of rows, not on their order or on batch boundaries.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np

from pipeline.dedup.minhash import band_keys, lsh_params

WINDOW = 32
_PAIR_CHUNK = 16_384


def _roots(parent: np.ndarray) -> np.ndarray:
    """Full path compression by pointer jumping (in place); returns ``parent``, now each row's root."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent[:] = grand


def _hook(parent: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
    """Merge the components of each pair; a component's root stays its smallest row (order-free labels)."""
    while len(left):
        roots = _roots(parent)
        ra, rb = roots[left], roots[right]
        differ = ra != rb
        if not differ.any():
            return
        ra, rb = ra[differ], rb[differ]
        lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
        np.minimum.at(parent, hi, lo)
        left, right = left[differ], right[differ]


class _RowReader:
    """Scattered signature rows. From a memory map they are read with ``os.pread``: faulting them in through
    the map would also map the neighbouring cached pages (the kernel's fault-around), so resident memory would
    grow to the whole index."""

    def __init__(self, sigs: np.ndarray) -> None:
        self.sigs = sigs
        filename = getattr(sigs, "filename", None)
        self.fd = os.open(filename, os.O_RDONLY) if isinstance(sigs, np.memmap) and filename else None
        self.width = sigs.shape[1] * sigs.dtype.itemsize
        self.offset = int(getattr(sigs, "offset", 0))

    def take(self, rows: np.ndarray) -> np.ndarray:
        if self.fd is None:
            return np.asarray(self.sigs[rows])
        unique, inverse = np.unique(rows, return_inverse=True)
        width, fd, offset = self.width, self.fd, self.offset
        data = b"".join(os.pread(fd, width, offset + r * width) for r in unique.tolist())
        return np.frombuffer(data, dtype=self.sigs.dtype).reshape(len(unique), -1)[inverse]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _verify(
    left: np.ndarray, right: np.ndarray, reader: _RowReader, number_keys: np.ndarray, need: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs with the same numbers and at least ``need`` equal signature cells."""
    same = number_keys[left] == number_keys[right]
    left, right = left[same], right[same]
    keep = np.zeros(len(left), dtype=bool)
    for lo in range(0, len(left), _PAIR_CHUNK):
        a, b = left[lo : lo + _PAIR_CHUNK], right[lo : lo + _PAIR_CHUNK]
        rows = reader.take(np.concatenate([a, b]))
        keep[lo : lo + len(a)] = (rows[: len(a)] == rows[len(a) :]).sum(axis=1) >= need
    return left[keep], right[keep]


def _sequential_blocks(sigs: np.ndarray, rows: int = 16_384) -> Iterator[np.ndarray]:
    """Signature rows block by block; a memory map is read with plain file reads so the scan does not leave
    every page of the index resident."""
    filename = getattr(sigs, "filename", None)
    if isinstance(sigs, np.memmap) and filename:
        width = sigs.shape[1]
        with open(filename, "rb") as fh:
            fh.seek(sigs.offset)
            for lo in range(0, sigs.shape[0], rows):
                count = min(rows, sigs.shape[0] - lo) * width
                yield np.fromfile(fh, dtype=sigs.dtype, count=count).reshape(-1, width)
        return
    for lo in range(0, sigs.shape[0], rows):
        yield np.asarray(sigs[lo : lo + rows])


def cluster_labels(
    sigs: np.ndarray,
    number_keys: np.ndarray,
    tiebreak: np.ndarray,
    threshold: float = 0.8,
    window: int = WINDOW,
    on_stage: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Label per row = the smallest row index of its near-duplicate cluster.

    Band by band, rows are sorted by (band key, content tiebreak); each row is compared with its next
    ``window`` neighbours that share the key. Pairs already in one component are skipped, so a big bucket
    of true duplicates costs about one comparison per row once its chain has merged.
    """
    n, num_perm = sigs.shape
    parent = np.arange(n, dtype=np.int64)
    if n < 2:
        return parent
    bands, rows = lsh_params(threshold, num_perm)
    need = int(np.ceil(threshold * num_perm - 1e-9))
    number_keys = np.asarray(number_keys)
    if on_stage:
        on_stage("banding")
    keys = np.empty((n, bands), dtype=np.uint64)
    lo = 0
    for block in _sequential_blocks(sigs):
        keys[lo : lo + len(block)] = band_keys(block, bands, rows)
        lo += len(block)
    reader = _RowReader(sigs)
    try:
        for band in range(bands):
            if on_stage:
                on_stage(f"band {band + 1}/{bands}")
            order = np.lexsort((tiebreak, keys[:, band]))
            sorted_keys = keys[order, band]
            for d in range(1, window + 1):
                same = np.nonzero(sorted_keys[:-d] == sorted_keys[d:])[0]
                if not len(same):
                    break
                left, right = order[same], order[same + d]
                roots = _roots(parent)
                open_pairs = roots[left] != roots[right]
                left, right = _verify(left[open_pairs], right[open_pairs], reader, number_keys, need)
                _hook(parent, left, right)
    finally:
        reader.close()
    return _roots(parent).copy()
