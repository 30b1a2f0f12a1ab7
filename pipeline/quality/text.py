"""Small text helpers the question and solution gates share (word shingles, sentences)."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def shingles(text: str, size: int = 3) -> set[tuple[str, ...]]:
    """Word `size`-grams of the lowercased text (single words when the text is shorter than `size`)."""
    words = _WORD.findall(text.lower())
    if len(words) < size:
        return {(w,) for w in words}
    return set(zip(*(words[i:] for i in range(size))))


def jaccard(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def sentences(text: str) -> list[str]:
    """Sentences and lines, in order (a decimal point does not end a sentence: it needs a space after it)."""
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


def last_match(
    pattern: re.Pattern[str], text: str, pos: int = 0, endpos: int | None = None
) -> re.Match[str] | None:
    """The last non-overlapping match of `pattern` in text[pos:endpos], or None."""
    found = None
    for found in pattern.finditer(text, pos, len(text) if endpos is None else endpos):  # noqa: B007
        pass
    return found
