"""Which row of a duplicate group survives: verified over unverified, then the earliest stage, then the smallest id.

The rule only reads row content (verification status, method, id), so the same rows give the same keepers in
any order and under any batching. Rows that share all three (the same content made twice by one stage) fall
back to input position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.records import VERIFIED_STATUSES


def stage_rank_table(stage_order: Sequence[str]) -> dict[str, int]:
    """Method → rank; ``seed`` first even when the order leaves it out; unknown methods rank last."""
    order = list(stage_order)
    if "seed" not in order:
        order.insert(0, "seed")
    return {method: i for i, method in enumerate(order)}


def is_verified(record: dict[str, Any]) -> bool:
    verification = record.get("verification") or {}
    return verification.get("status") in VERIFIED_STATUSES


def prior_dropped(record: dict[str, Any]) -> int:
    """Rows an earlier dedup step already folded into this one."""
    dedup = record.get("dedup") or {}
    return int(dedup.get("dropped") or 0)


@dataclass
class RankColumns:
    """Per-row keep-rule columns, collected batch by batch."""

    unverified: list[np.ndarray] = field(default_factory=list)
    stage: list[np.ndarray] = field(default_factory=list)
    ids: list[np.ndarray] = field(default_factory=list)
    dropped: list[np.ndarray] = field(default_factory=list)

    def add(self, records: list[dict[str, Any]], methods: list[str], ranks: dict[str, int]) -> None:
        last = len(ranks)
        self.unverified.append(np.array([0 if is_verified(r) else 1 for r in records], dtype=np.int8))
        self.stage.append(np.array([ranks.get(m, last) for m in methods], dtype=np.int32))
        self.ids.append(np.array([str(r["id"]).encode("utf-8") for r in records], dtype=np.bytes_))
        self.dropped.append(np.array([prior_dropped(r) for r in records], dtype=np.int64))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self.ids:
            empty = np.empty(0, dtype=np.int64)
            return empty.astype(np.int8), empty.astype(np.int32), np.empty(0, dtype="S1"), empty
        return (
            np.concatenate(self.unverified),
            np.concatenate(self.stage),
            np.concatenate(self.ids),
            np.concatenate(self.dropped),
        )


def choose_keepers(
    labels: np.ndarray,
    unverified: np.ndarray,
    stage: np.ndarray,
    ids: np.ndarray,
    dropped: np.ndarray,
    anchors: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep mask and folded-row counts for the first ``len(unverified)`` rows.

    ``labels`` covers those rows followed by ``anchors`` rows from earlier output (``--against``): anchors are
    always "kept" already, so a group that holds one drops every new row. ``folded[i]`` for a kept row ``i`` is
    its own prior count plus, for each dropped group member, 1 + that member's prior count.
    """
    n = len(unverified)
    if len(labels) != n + anchors:
        raise ValueError("labels must cover the rows and the anchors")
    keep = np.zeros(n, dtype=bool)
    folded = np.zeros(n, dtype=np.int64)
    if n == 0:
        return keep, folded
    own = labels[:n]
    anchored = np.zeros(n, dtype=bool)
    if anchors:
        anchored = np.isin(own, labels[n:])
    position = np.arange(n)
    order = np.lexsort((position, ids, stage, unverified, own))
    sorted_labels = own[order]
    first = np.ones(n, dtype=bool)
    first[1:] = sorted_labels[1:] != sorted_labels[:-1]
    winners = order[first]
    keep[winners] = True
    keep &= ~anchored
    # every row's weight: itself + what it already carries; a winner's count is its group's total minus 1
    weight = 1 + dropped
    _, group = np.unique(own, return_inverse=True)
    totals = np.bincount(group, weights=weight)
    folded[keep] = (totals[group[keep]] - 1).astype(np.int64)
    return keep, folded


def keeper_positions(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """For each of the ``len(keep)`` rows, the position of the row its group kept (-1: the group's keeper is a
    row of earlier output, ``--against``). Kept rows point at themselves."""
    n = len(keep)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    _, group = np.unique(labels[:n], return_inverse=True)
    by_group = np.full(int(group.max()) + 1, -1, dtype=np.int64)
    by_group[group[keep]] = np.nonzero(keep)[0]
    return by_group[group]
