"""Dedup and decontamination: exact and MinHash near-duplicate removal, benchmark overlap checks.

Public API:

- ``near_duplicate_clusters(texts, threshold=0.8, num_perm=128)``: a cluster id per text.
- ``contaminated(texts, benchmarks=("gsm8k-test", "math500"), ngram=13)``: the overlapped benchmark item per text.
- ``exact_dedup`` / ``near_dedup`` / ``decontaminate``: pipeline steps over record streams.

Near-duplicates are texts whose estimated Jaccard over word unigram+bigram shingles is ≥ the threshold **and**
that state the same numbers, so a variant that differs only in its numbers (``symbolic``, GSM-Symbolic) is never
a duplicate. A variant that differs only in a person's name (``entity_swap``) keeps its numbers and most of its
shingles: with the leading name of 2,102 GSM8K train questions swapped everywhere, the median estimated Jaccard is
0.90 and 92% are near-duplicates at 0.8, so they fold into their seed (the keep rule keeps the verified,
earlier-stage row). That is deliberate: a name swap adds little training signal. At threshold 0.95 only 6% fold.

Modules: ``text`` (normalisation), ``minhash`` (signatures), ``clusters`` (LSH banding, verification,
union-find), ``keep`` (keep rule), ``index`` (on-disk signature index, resume), ``decontam`` (fingerprints),
``steps`` (record steps), ``commands`` (CLI).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.dedup.clusters import cluster_labels
from pipeline.dedup.decontam import contaminated
from pipeline.dedup.index import SignatureIndex, hash_texts
from pipeline.dedup.steps import content_key, decontaminate, exact_dedup, near_dedup

__all__ = ["near_duplicate_clusters", "contaminated", "exact_dedup", "near_dedup", "decontaminate"]

_IN_PROCESS = 20_000


def near_duplicate_clusters(
    texts: Sequence[str],
    threshold: float = 0.8,
    num_perm: int = 128,
    *,
    seed: int = 1,
    workers: int | None = None,
) -> list[int]:
    """A cluster id per text (the index of the cluster's first text); deterministic for the same input and seed."""
    texts = list(texts)
    if any(not isinstance(t, str) for t in texts):
        raise TypeError("texts must be strings")
    if not texts:
        return []
    tiebreak = np.array([content_key(t) for t in texts], dtype=np.int64)
    if len(texts) <= _IN_PROCESS or workers == 1:
        sigs, numkeys = hash_texts(texts, num_perm, seed)
        return cluster_labels(sigs, numkeys, tiebreak, threshold).tolist()
    with tempfile.TemporaryDirectory(prefix="mathaug-clusters-") as tmp:
        index = SignatureIndex(Path(tmp), num_perm=num_perm, seed=seed, workers=workers)
        try:
            for lo in range(0, len(texts), 10_000):
                index.add(texts[lo : lo + 10_000])
            index.close()
        except BaseException:
            index.abort()
            raise
        labels = cluster_labels(index.signatures(), index.number_keys(), tiebreak, threshold)
        return labels.tolist()
