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
        words = (record.get("solution") or "").count(" ") + 1  # words, near enough, without splitting
        return abs(words - target)
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
        unverified, stage, ids, dropped = [], [], [], []
        preferences: list[list[int]] = [[] for _ in self.prefer]
        for rec, method in zip(records, methods):  # one pass: this runs once per row of a million-row build
            verification = rec.get("verification") or {}
            unverified.append(0 if verification.get("status") in VERIFIED_STATUSES else 1)
            stage.append(ranks.get(method, last))
            ids.append(str(rec["id"]))
            dedup = rec.get("dedup")
            dropped.append(int(dedup.get("dropped") or 0) if dedup else 0)
            for values, preference in zip(preferences, self.prefer):
                values.append(preference_value(rec, preference, self.targets))
        self.unverified.append(np.array(unverified, dtype=np.int8))
        self.stage.append(np.array(stage, dtype=np.int32))
        self.ids.append(np.array([i.encode("utf-8") for i in ids], dtype=np.bytes_))
        self.dropped.append(np.array(dropped, dtype=np.int64))
        self.preferences.append([np.array(values, dtype=np.int64) for values in preferences])

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
    # each (group, subgroup) pair: its best row is the first in rule order
    pairs = np.unique(np.stack([own, subgroups[:n]], axis=1), axis=0, return_inverse=True)[1].reshape(-1)
    sorted_pairs = pairs[order]
    _, first_at = np.unique(sorted_pairs, return_index=True)
    leads = np.zeros(n, dtype=bool)
    leads[first_at] = True  # in sorted order: the best row of its pair
    # among a group's pair leaders, in rule order, the first `limit` are taken
    sorted_groups = own[order]
    lead_groups = sorted_groups[leads]
    starts = np.r_[0, np.flatnonzero(lead_groups[1:] != lead_groups[:-1]) + 1]
    rank_in_group = np.arange(len(lead_groups)) - np.repeat(starts, np.diff(np.r_[starts, len(lead_groups)]))
    taken_pairs = np.zeros(pairs.max() + 1, dtype=bool)
    taken_pairs[sorted_pairs[leads][rank_in_group < limit]] = True
    taken_pairs[np.unique(pairs[anchored])] = False
    pair_best = np.empty(pairs.max() + 1, dtype=np.int64)
    pair_best[sorted_pairs[first_at]] = order[first_at]
    if whole_subgroups:
        keep = taken_pairs[pairs] & ~anchored
    else:
        keep[pair_best[taken_pairs.nonzero()[0]]] = True
        keep &= ~anchored
    # a dropped row folds into its pair's keeper, else into its group's best keeper
    group_best = np.full(int(own.max()) + 1, -1, dtype=np.int64)
    kept_sorted = order[keep[order]]
    rev = kept_sorted[::-1]
    group_best[own[rev]] = rev  # the last write per group is its first (best) kept row
    keeper = np.where(keep, position, np.where(taken_pairs[pairs], pair_best[pairs], group_best[own]))
    keeper[anchored] = -1
    dropped_rows = ~keep & (keeper >= 0)
    np.add.at(folded, keeper[dropped_rows], 1 + dropped[dropped_rows])
    folded[keep] += dropped[keep]
    return keep, folded, keeper
