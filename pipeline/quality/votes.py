"""Honest votes: a sample that never came back, or came back without an answer, counts against agreement.

A server that ignores `n` returns one sample where three were asked; "majority of 3" must then mean 1 of 3,
not 1 of 1.
"""

from __future__ import annotations

import re

from pipeline.verify import answers_match, extract_answer, majority
from pipeline.verify.normalize import text_key


def _check(answers: list[str | None], asked: int) -> None:
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
        raise ValueError(f"asked must be a positive int, got {asked!r}")
    if len(answers) > asked:
        raise ValueError(f"{len(answers)} answers but only {asked} samples asked")


def votes(answers: list[str | None], target: str, asked: int) -> tuple[int, int, int]:
    """(asked, received, agreeing) for `target`.

    `answers` has one entry per sample that came back (None: it had no parsable answer); received counts
    them, agreeing counts those that match `target`. Samples never returned are simply absent.
    """
    _check(answers, asked)
    agreeing = sum(1 for a in answers if a is not None and (a == target or answers_match(a, target)))
    return asked, len(answers), agreeing


def agreement(answers: list[str | None], asked: int, min_agree: int | float) -> str | None:
    """The answer at least `min_agree` samples agree on; a fractional `min_agree` is a share of the samples
    ASKED (missing samples are padded as disagreeing). Otherwise as `pipeline.verify.majority`."""
    _check(answers, asked)
    return majority([*answers, *[None] * (asked - len(answers))], min_agree)


_GUESSABLE = frozenset({"yes", "no", "true", "false"})


def guessable(answer: str) -> bool:
    """A yes/no or true/false answer: samples agree on it by chance half the time or more, so agreement on it is
    no evidence that the problem was solved ("\\text{Yes}" counts)."""
    return re.sub(r"\d", "", text_key(answer)) in _GUESSABLE


def sample_answers(texts: list[str | None], asked: int) -> list[str | None]:
    """Each sample's final answer, padded to the samples asked: a sample that a check rejected (None), that has
    no answer, or that never came back is None, so it counts against agreement."""
    answers = [extract_answer(t) if t is not None else None for t in texts]
    return (answers + [None] * asked)[:asked]
