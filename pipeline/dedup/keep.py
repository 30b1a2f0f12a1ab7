"""Which rows of a duplicate group survive: verified over unverified, then the recipe's preferences (shorter,
longer, executed, more votes), then the earliest stage, then the smallest id.

The rule only reads row content (verification status, solution, votes, method, id), so the same rows give the
same keepers in any order and under any batching. Rows that share all of them (the same content made twice by
one stage) fall back to input position.

A group can keep more than one row: exact dedup keeps up to ``max_solutions_per_question`` distinct solutions of
one question (``limit`` subgroups of one row each), near dedup up to ``max_per_cluster`` distinct questions of a
cluster with all their solutions (``limit`` subgroups, every row of a kept subgroup).
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


EXECUTED_METHODS = frozenset({"execution", "execution+majority", "executed", "code"})
# length targets (words) per difficulty tier for `near_target`: harder problems get longer solutions ("When More
# is Less": accuracy is an inverted U in CoT length, its peak moving right with difficulty)
LENGTH_TARGETS = {"simple": 60, "moderate": 150, "highly complex": 300, "Level 1": 60, "Level 2": 90,
                  "Level 3": 150, "Level 4": 220, "Level 5": 300, "": 120}


def preference_value(record: dict[str, Any], preference: str, targets: dict[str, int] | None = None) -> int:
    """A row's sort value for one preference (smaller wins)."""
    if preference in ("shorter", "longer"):
        length = len(record.get("solution") or "")
        return length if preference == "shorter" else -length
    if preference == "near_target":
        targets = targets or LENGTH_TARGETS
        target = targets.get(record.get("difficulty") or "", targets.get("", LENGTH_TARGETS[""]))
        return abs(len((record.get("solution") or "").split()) - target)
    verification = record.get("verification") or {}
    if preference == "executed":
        return 0 if verification.get("method") in EXECUTED_METHODS else 1
    if preference == "more_votes":
        return -int(verification.get("votes") or 0)
    raise ValueError(f"unknown dedup preference {preference!r}")


@dataclass
class RankColumns:
    """Per-row keep-rule columns, collected batch by batch."""

    prefer: tuple[str, ...] = ()
    targets: dict[str, int] | None = None
    unverified: list[np.ndarray] = field(default_factory=list)
    stage: list[np.ndarray] = field(default_factory=list)
    ids: list[np.ndarray] = field(default_factory=list)
    dropped: list[np.ndarray] = field(default_factory=list)
    preferences: list[list[np.ndarray]] = field(default_factory=list)

    def add(self, records: list[dict[str, Any]], methods: list[str], ranks: dict[str, int]) -> None:
        last = len(ranks)
        self.unverified.append(np.array([0 if is_verified(r) else 1 for r in records], dtype=np.int8))
        self.stage.append(np.array([ranks.get(m, last) for m in methods], dtype=np.int32))
        self.ids.append(np.array([str(r["id"]).encode("utf-8") for r in records], dtype=np.bytes_))
        self.dropped.append(np.array([prior_dropped(r) for r in records], dtype=np.int64))
        self.preferences.append(
            [np.array([preference_value(r, p, self.targets) for r in records], dtype=np.int64) for p in self.prefer]
        )

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

    def preference_arrays(self) -> list[np.ndarray]:
        return [np.concatenate([batch[k] for batch in self.preferences]) for k in range(len(self.prefer))]


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


def choose_keepers_limited(
    labels: np.ndarray,
    subgroups: np.ndarray,
    unverified: np.ndarray,
    stage: np.ndarray,
    ids: np.ndarray,
    dropped: np.ndarray,
    *,
    limit: int,
    whole_subgroups: bool,
    preferences: Sequence[np.ndarray] = (),
    anchors: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep mask, folded-row counts and each row's keeper position, keeping up to ``limit`` subgroups per group.

    Rows are taken in keep-rule order (verified, preferences, stage, id, position). A subgroup (the same
    question and solution, for exact dedup; the same question, for near dedup) is taken when its best row comes
    up and fewer than ``limit`` subgroups of the group are taken; ``whole_subgroups`` keeps every row of a taken
    subgroup, otherwise its best row only. A dropped row folds into its subgroup's keeper when there is one,
    else into the group's best keeper. Groups holding an anchor (a row of earlier output) keep nothing.
    """
    n = len(unverified)
    keep = np.zeros(n, dtype=bool)
    folded = np.zeros(n, dtype=np.int64)
    keeper = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return keep, folded, keeper
    own = labels[:n]
    anchored = np.isin(own, labels[n:]) if anchors else np.zeros(n, dtype=bool)
    position = np.arange(n)
    order = np.lexsort((position, ids, stage, *reversed(list(preferences)), unverified, own))
    taken: dict[int, list[int]] = {}  # group label -> kept subgroup ids, best first
    sub_keeper: dict[tuple[int, int], int] = {}  # (label, subgroup) -> position of its best kept row
    for i in order.tolist():
        if anchored[i]:
            continue
        group, sub = int(own[i]), int(subgroups[i])
        subs = taken.setdefault(group, [])
        if sub in subs:
            if whole_subgroups:
                keep[i] = True
            continue
        if len(subs) < limit:
            subs.append(sub)
            sub_keeper[(group, sub)] = i
            keep[i] = True
    first_keeper = {group: sub_keeper[(group, subs[0])] for group, subs in taken.items() if subs}
    for i in range(n):
        if keep[i]:
            keeper[i] = i
            continue
        group = int(own[i])
        j = sub_keeper.get((group, int(subgroups[i])), first_keeper.get(group, -1))
        keeper[i] = j
        if j >= 0:
            folded[j] += 1 + dropped[i]
    folded[keep] += dropped[keep]
    return keep, folded, keeper
