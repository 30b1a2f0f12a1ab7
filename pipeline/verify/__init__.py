"""Answer verifier: extract a model's final answer and decide whether it denotes the same object as the gold.

Public API: `extract_answer`, `answers_match`, `grade`, `grade_many`, `majority`, `Verdict`; helpers
`match_reason` (answers_match with its reason), `stats` (timeout / sandbox counters), `warm_up` (start workers).
Fast paths (normalised strings, exact rationals over Q(i), safe high-precision numerics, random-point identity
tests) decide most pairs in microseconds; sympy runs only for the rest, in sandbox worker processes under a
hard timeout. A timeout is a reject with reason "timeout" and is counted in `stats()`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import core
from .extract import extract_answer
from .sandbox import COUNTERS, default_pool

__all__ = [
    "Verdict",
    "extract_answer",
    "answers_match",
    "grade",
    "grade_many",
    "majority",
    "match_reason",
    "stats",
    "warm_up",
    "DEFAULT_TIMEOUT",
]

DEFAULT_TIMEOUT = 5.0
_BATCH_IN_PROCESS = 64  # below this many pairs, worker start-up costs more than it saves
_CHUNK = 64


@dataclass(frozen=True)
class Verdict:
    """Outcome of grading one output: `reason` says why (for the row's `verification.detail`)."""

    correct: bool
    extracted: str | None
    reason: str


def _check_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, got {type(value).__name__}")


def _check_timeout(timeout: float) -> None:
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")


def answers_match(given: str, gold: str, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether the final answer `given` denotes the same object as the reference answer `gold`."""
    _check_str("given", given)
    _check_str("gold", gold)
    _check_timeout(timeout)
    return core.match_sandboxed(given, gold, timeout)[0]


def match_reason(given: str, gold: str, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[bool, str]:
    """`answers_match` with the reason for the decision."""
    _check_str("given", given)
    _check_str("gold", gold)
    _check_timeout(timeout)
    return core.match_sandboxed(given, gold, timeout)


def grade(output: str, gold: str, *, timeout: float = DEFAULT_TIMEOUT) -> Verdict:
    """Extract the committed answer from a model output and match it against the gold answer."""
    _check_str("output", output)
    _check_str("gold", gold)
    _check_timeout(timeout)
    ok, extracted, reason = core.grade_with(output, gold, lambda g, r: core.match_sandboxed(g, r, timeout))
    return Verdict(ok, extracted, reason)


def _match_verdict(given: str, gold: str, *, timeout: float) -> Verdict:
    ok, reason = core.match_sandboxed(given, gold, timeout)
    return Verdict(ok, given, reason)


def grade_many(
    outputs: Sequence[str],
    golds: Sequence[str],
    *,
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    extract: bool = True,
) -> list[Verdict]:
    """Grade many (output, gold) pairs on all cores; each pair gets its own hard `timeout`.

    Pairs are grouped by gold so each worker parses a gold once (its cache), and shipped in chunks to the
    sandbox workers; a pair that runs past `timeout` gets reason "timeout" and its worker is replaced.
    With `extract=False` the outputs are already final answers and are matched as they are.
    """
    if len(outputs) != len(golds):
        raise ValueError(f"{len(outputs)} outputs but {len(golds)} golds")
    for o, g in zip(outputs, golds, strict=True):
        _check_str("output", o)
        _check_str("gold", g)
    _check_timeout(timeout)
    n = len(outputs)
    pool = default_pool()
    n_workers = max(1, min(workers or pool.size, pool.size))
    if n < _BATCH_IN_PROCESS or n_workers == 1 and n < 4 * _BATCH_IN_PROCESS:
        one = grade if extract else _match_verdict
        return [one(o, g, timeout=timeout) for o, g in zip(outputs, golds, strict=True)]
    order = sorted(range(n), key=lambda k: golds[k])
    chunk = max(8, min(_CHUNK * 4, math.ceil(n / (n_workers * 4))))
    chunks = [order[i : i + chunk] for i in range(0, n, chunk)]
    results: list[Verdict | None] = [None] * n

    def run(indices: list[int]) -> None:
        items = [(outputs[k], golds[k], extract) for k in indices]
        try:
            _collect(indices, pool.stream(items, timeout))
        except Exception as exc:  # no worker could be started: the rest of this chunk is rejected, not lost
            for k in indices:
                if results[k] is None:
                    results[k] = Verdict(False, None, f"verifier error: {type(exc).__name__}: {exc}")

    def _collect(indices: list[int], stream) -> None:
        for pos, status, value in stream:
            k = indices[pos]
            if status == "ok":
                ok, extracted, reason = value
                results[k] = Verdict(ok, extracted, reason)
            elif status == "timeout":
                results[k] = Verdict(False, None, "timeout")
            else:
                results[k] = Verdict(False, None, f"verifier error: {value}")

    with ThreadPoolExecutor(max_workers=n_workers) as ex:
        list(ex.map(run, chunks))
    return [r if r is not None else Verdict(False, None, "verifier error: missing result") for r in results]


def majority(answers: list[str | None], min_agree: int | float) -> str | None:
    """The answer at least `min_agree` samples agree on (a count, or a fraction of all samples if a float).

    Answers are clustered with `answers_match`, not string equality; None answers count as disagreeing.
    Returns the most common spelling in the winning cluster; None when no cluster is large enough or two
    clusters tie for the lead.
    """
    if isinstance(min_agree, bool) or not isinstance(min_agree, (int, float)):
        raise TypeError("min_agree must be an int count or a float fraction")
    if isinstance(min_agree, float):
        if not 0 < min_agree <= 1:
            raise ValueError(f"a fractional min_agree must be in (0, 1], got {min_agree}")
        need = math.ceil(min_agree * len(answers) - 1e-9)
    else:
        if min_agree < 1:
            raise ValueError(f"min_agree must be at least 1, got {min_agree}")
        need = min_agree
    clusters: list[list[str]] = []
    for a in answers:
        if a is None:
            continue
        _check_str("answer", a)
        for c in clusters:
            if a == c[0] or answers_match(a, c[0]):
                c.append(a)
                break
        else:
            clusters.append([a])
    if not clusters:
        return None
    clusters.sort(key=len, reverse=True)
    best = clusters[0]
    if len(best) < need or len(clusters) > 1 and len(clusters[1]) == len(best):
        return None
    return max(set(best), key=lambda s: (best.count(s), -best.index(s)))


def stats() -> dict[str, int]:
    """Counts since start: timeouts, sympy escalations, worker starts and errors."""
    return COUNTERS.snapshot()


def warm_up() -> None:
    """Start the sandbox workers now (each imports sympy once) so later calls do not pay for it."""
    pool = default_pool()
    workers = [pool.acquire() for _ in range(pool.size)]
    for w in workers:
        pool.release(w, True)
