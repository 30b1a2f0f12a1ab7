"""Text normalisation shared by exact dedup, near dedup and decontamination.

Why these rules: a GSM-Symbolic variant differs from its seed only in numbers, and it must survive dedup, so
numbers are kept verbatim as their own tokens (``$1,200.50`` → ``1200.50``). Case, punctuation, whitespace and
LaTeX backslashes are noise for duplicate detection and are dropped; the math operators ``+ - * / = < > ^ %``
(and ``!`` right after a number or bracket, i.e. a factorial) change a problem's meaning and are kept as tokens.

Changing anything here changes every signature and fingerprint: bump ``TOKENIZER_VERSION`` and rebuild
``data/benchmarks`` with ``scripts/build_fingerprints.py``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache

TOKENIZER_VERSION = "2"

_TOKEN_RE = re.compile(r"\d+(?:\.\d+)*|[^\W\d_]+|[+\-*/=<>^%]|(?<=[\d)}\]])!")
# a comma between a digit and exactly three digits is a thousands separator (1,200 → 1200); any other comma
# separates (a list 1,2,3 gives three numbers)
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def tokens(text: str) -> list[str]:
    """Lower-cased word, number and operator tokens of ``text``; numbers stay verbatim (see module doc)."""
    norm = text or ""
    if not norm.isascii():
        norm = unicodedata.normalize("NFKC", norm)
    if "," in norm:
        norm = _THOUSANDS_RE.sub("", norm)
    return _TOKEN_RE.findall(norm.casefold())


def normalized_text(text: str) -> str:
    """The exact-dedup key text: tokens joined by single spaces (numbers kept)."""
    return " ".join(tokens(text))


@lru_cache(maxsize=1 << 16)
def exact_key(text: str) -> bytes:
    """A 16-byte digest of ``normalized_text``: equal for texts that differ only in case/punctuation/spacing.

    Cached: the solutions of one question arrive together, and each would tokenise the same question again."""
    return hashlib.blake2b(normalized_text(text).encode("utf-8"), digest_size=16).digest()


def solution_key(text: str) -> bytes:
    """A 16-byte digest of a solution with case and spacing folded: two solutions that differ only there are one.

    Cheaper than ``exact_key`` (no tokenising): solutions are long, and punctuation can matter in them."""
    return hashlib.blake2b(" ".join(text.casefold().split()).encode("utf-8"), digest_size=16).digest()
