"""Quantities in problem text: numbers in digits and in words ("three", "twice", "half", "a dozen", "one third").

A rewrite that keeps the answer must keep every quantity of its source, and a model may spell one either way
("three years younger" -> "3 years younger"), so quantities are compared by value, each with the values it may
be written as ("half" is 1/2; "50%" is 50 or 1/2; "two dozen" is 24 or 2).
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

__all__ = ["Quantity", "numbers_in", "number_value", "quantities", "values_in"]

_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_DENOMINATORS = {
    "half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "fourth": 4, "fourths": 4,
    "fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6, "seventh": 7, "sevenths": 7, "eighth": 8, "eighths": 8,
    "ninth": 9, "ninths": 9, "tenth": 10, "tenths": 10, "twelfth": 12, "twelfths": 12,
    "hundredth": 100, "hundredths": 100,
}  # fmt: skip
_MULTIPLIERS = {
    "twice": 2, "double": 2, "doubled": 2, "doubles": 2, "doubling": 2, "thrice": 3, "triple": 3,
    "tripled": 3, "triples": 3, "tripling": 3, "quadruple": 4, "quadrupled": 4,
}  # fmt: skip
# one-word cardinals ("three", "twenty"), for callers that match numbers token by token
CARDINAL_WORDS: dict[str, int] = dict(_UNITS)
_CARDINAL = "|".join(sorted([*_UNITS, *_SCALES], key=len, reverse=True))
_WORD_NUMBER = rf"(?:{_CARDINAL})(?:(?:[\s-]+|(?<=hundred)\s+and\s+|(?<=thousand)\s+and\s+)(?:{_CARDINAL}))*"
_DENOM = "|".join(sorted(_DENOMINATORS, key=len, reverse=True))
_MULT = "|".join(sorted(_MULTIPLIERS, key=len, reverse=True))
# One alternation, longest forms first, so "one and a half", "two thirds" and "half a dozen" are one quantity.
_WORDS_RE = re.compile(
    rf"\b(?:(?P<mixed>{_WORD_NUMBER})\s+and\s+an?\s+(?P<mixed_denom>half|third|quarter)"
    rf"|(?:(?P<dozens>{_WORD_NUMBER}|an?|half\s+an?)[\s-]+dozens?)"
    rf"|(?:(?P<num>{_WORD_NUMBER}|an?)[\s-]+(?P<denom>{_DENOM})\b(?!\s+(?:day|time|place|grade|year|week|month|floor)))"
    rf"|(?P<half>half|halves)"
    rf"|(?P<mult>{_MULT})"
    rf"|(?P<cardinal>{_WORD_NUMBER})"
    rf")\b(?P<percent>\s*(?:%|per\s*cent|percent))?",
    re.I,
)
_NOT_LETTERS = {c: " " for c in range(128) if not chr(c).isalpha()}  # str.translate table: letters and spaces
# Words a quantity in words can start with: the big pattern is tried only where one of them stands (speed).
_STARTERS = frozenset([*_UNITS, *_SCALES, *_MULTIPLIERS, "half", "halves", "a", "an"])
_AFTER_ARTICLE = frozenset([*_DENOMINATORS, "dozen", "dozens"])  # "a third", "a dozen"
_DIGIT_RE = re.compile(r"\d+(?:[.,]\d+)*")
_THOUSANDS_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_TAIL_STARTS = frozenset(
    " /%\\p"
)  # what "/ 4", "%", "\\%", " percent" begin with (skip the tail match otherwise)
_DIGIT_TAIL_RE = re.compile(r"\s*/\s*(\d+)(?![.\d])|\s*(?:\\?%|per\s*cent\b|percent\b)")


Value = int | Fraction  # equal ints and Fractions hash alike; ints keep the common case fast


def _exact(value: Fraction) -> Value:
    return value.numerator if value.denominator == 1 else value


_HALF = Fraction(1, 2)
_NOT_REQUIRED = frozenset({0, 1, Fraction(1, 100)})  # "one", "zero", "one percent": not checkable in words


class Quantity(NamedTuple):
    """One quantity in a text: where it is, the values it may stand for, and whether a rewrite must keep it.

    `required` is False for the value 1 ("one", "1 hour" -> "an hour", "each", "per": not checkable in words)
    and for bare "zero".
    """

    start: int
    end: int
    text: str
    values: frozenset[Value]
    value: Value  # the value as written ("half a dozen": 6; "50%": 50)
    required: bool = True


def _cardinal_value(phrase: str) -> int | None:
    """Value of "twenty-five", "three hundred and twelve", "two thousand five hundred"; None if malformed."""
    total = current = 0
    seen = False
    for word in re.split(r"[\s-]+", phrase.lower()):
        if word == "and":
            continue
        if word in _UNITS:
            unit, last = _UNITS[word], current % 100
            if last and (last % 10 or last < 20 or unit >= 10):
                return None  # "five six", "twenty thirty": two numbers, not one
            current += unit
        elif word in _SCALES:
            scale = _SCALES[word]
            if scale == 100:
                current = (current or 1) * 100
            else:
                total += (current or 1) * scale
                current = 0
        else:
            return None
        seen = True
    return total + current if seen else None


def _word_amount(phrase: str) -> Value | None:
    """A cardinal or the article standing for 1 ("a third"), or "half a" (1/2)."""
    p = phrase.lower().strip()
    if p in ("a", "an"):
        return 1
    if re.fullmatch(r"half\s+an?", p):
        return _HALF
    return _cardinal_value(p)


def _with_percent(values: set[Value], percent: bool) -> set[Value]:
    return values | {_exact(Fraction(v) / 100) for v in values} if percent else values


def _starts(low: str) -> list[int]:
    """Positions of the words a quantity in words may start with (few texts have many): the big pattern is
    tried only there, which keeps the gates fast."""
    words = set(low.translate(_NOT_LETTERS).split())
    present = words & _STARTERS
    if not present:
        return []
    if words.isdisjoint(_AFTER_ARTICLE):
        present -= {"a", "an"}
    positions = []
    for word in present:
        i = low.find(word)
        while i >= 0:
            end = i + len(word)
            if (i == 0 or not low[i - 1].isalpha()) and (end == len(low) or not low[end].isalpha()):
                positions.append(i)
            i = low.find(word, end)
    return sorted(positions)


def _word_quantities(text: str) -> list[Quantity]:
    out: list[Quantity] = []
    done = 0
    for start in _starts(text.lower()):
        if start < done:
            continue
        m = _WORDS_RE.match(text, start)
        if m is None:
            continue
        done = m.end()
        found = _word_match_values(m)
        if found is None:  # several numbers side by side ("five six"): one quantity each
            out.extend(_word_quantities_each(m))
            continue
        value, values = found
        values = _with_percent(values, bool(m.group("percent")))
        out.append(
            Quantity(m.start(), m.end(), m.group(0), frozenset(values), value, not values <= _NOT_REQUIRED)
        )
    return out


def _word_match_values(m: re.Match[str]) -> tuple[Value, set[Value]] | None:
    """(the value as written, the values it may stand for) of one match of the words pattern."""
    g = m.groupdict()
    if g["mixed"]:  # "one and a half"
        whole = _word_amount(g["mixed"])
        part = Fraction(1, _DENOMINATORS[g["mixed_denom"].lower()])
        return None if whole is None else (whole + part, {whole + part, whole, part})
    if g["dozens"]:  # "two dozen", "half a dozen"
        count = _word_amount(g["dozens"])
        return (
            None
            if count is None
            else (_exact(Fraction(count) * 12), {_exact(Fraction(count) * 12), count, 12})
        )
    if g["denom"]:  # "two thirds", "a quarter"
        num = _word_amount(g["num"])
        if num is None:
            return None
        value = _exact(Fraction(num) / _DENOMINATORS[g["denom"].lower()])
        coins = (
            {_exact(Fraction(num) * 25)} if g["denom"].lower().startswith("quarter") else set()
        )  # 25 cents
        return value, {value} | coins
    if g["half"]:
        return _HALF, {_HALF}
    if g["mult"]:
        value = _MULTIPLIERS[g["mult"].lower()]
        return value, {value}
    value = _cardinal_value(g["cardinal"])
    return None if value is None else (value, {value})


def _word_quantities_each(m: re.Match[str]) -> list[Quantity]:
    out = []
    for w in re.finditer(r"[a-zA-Z]+", m.group(0)):
        value = _cardinal_value(w.group(0))
        if value is not None:
            start = m.start() + w.start()
            out.append(
                Quantity(start, start + len(w.group(0)), w.group(0), frozenset({value}), value, value > 1)
            )
    return out


def _digit_quantities(text: str) -> list[Quantity]:
    out: list[Quantity] = []
    consumed = 0
    for m in _DIGIT_RE.finditer(text):
        start, token = m.start(), m.group(0)
        if start < consumed:
            continue  # the denominator of "3/4"
        if start and (text[start - 1].isalpha() or text[start - 1] in "_."):
            continue  # "x2", "a_1": a name, not a quantity
        if token.isdigit():
            value: Value = int(token)
            plain = token
        elif _THOUSANDS_RE.fullmatch(token):
            plain = token.replace(",", "")
            value = _exact(Fraction(plain)) if "." in plain else int(plain)
        else:  # "1,2,3" is a list; "1.2.3" a version: one number each
            for part in re.finditer(r"\d+", token):
                value = int(part.group(0))
                out.append(
                    Quantity(
                        start + part.start(),
                        start + part.end(),
                        part.group(0),
                        frozenset({value}),
                        value,
                        value != 1,
                    )
                )
            continue
        end = m.end()
        values = {value}
        tail = _DIGIT_TAIL_RE.match(text, end) if text[end : end + 1] in _TAIL_STARTS else None
        if tail:
            end = tail.end()
            if tail.group(1):  # "3/4"
                if int(tail.group(1)) and "." not in plain:
                    value = _exact(Fraction(value, int(tail.group(1))))
                    values = {value}
            else:  # "50%": 50 or 1/2
                values = {value, _exact(Fraction(value) / 100)}
        consumed = end
        out.append(Quantity(start, end, text[start:end], frozenset(values), value, value != 1))
    return out


@lru_cache(maxsize=4096)
def quantities(text: str) -> tuple[Quantity, ...]:
    """Every quantity in the text, in digits or in words, in order of position (cached: the gates ask for the
    quantities of one text several times)."""
    return tuple(sorted(_digit_quantities(text) + _word_quantities(text), key=lambda q: q.start))


@lru_cache(maxsize=4096)
def values_in(text: str) -> frozenset[Value]:
    """Every value the text's quantities may stand for; a fraction "3/4" also offers its 3 and 4."""
    values: set[Value] = set()
    for q in quantities(text):
        values |= q.values
        if "/" in q.text:  # "3/4" also offers its 3 and 4
            values.update(int(d) for d in re.findall(r"\d+", q.text))
    return frozenset(values)


def _canonical(value: Value) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def numbers_in(text: str, *, words: bool = True) -> set[str]:
    """Numbers written in digits, thousands separators dropped (``1,200`` -> ``1200``), and with `words` the
    quantities written in words a rewrite must keep, as digits ("three" -> "3", "half" -> "1/2", "a dozen" -> "12").
    """
    found = {n.replace(",", "") for n in _DIGITS.findall(text)}
    if words:
        for q in _word_quantities(text):
            if q.required:
                found.add(_canonical(q.value))
    return found


_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_LATEX_NOISE = re.compile(r"\\[,;!: ]|\\\$|\$|\\left|\\right|\^\{?\\circ\}?|°")
_UNIT_WORDS = re.compile(r"\s+[a-zA-Z][a-zA-Z ]*\.?$")
_DECIMAL_OR_RATIO = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$")


def number_value(answer: str) -> Fraction | None:
    """Exact value of a numeric answer ("$1,200", "\\frac{3}{5}", "25\\%", "35 years", "0.5"); None otherwise."""
    if _PLAIN_NUMBER.fullmatch(answer):
        return Fraction(answer)
    s = _TEXT_WRAPPER.sub(r" \1 ", answer).strip()
    s = _LATEX_NOISE.sub(" ", s).strip()
    s = _UNIT_WORDS.sub("", s).strip()  # a unit word: "35 years"
    percent = s.endswith("%")
    s = s.rstrip("%\\ ").replace(",", "") if percent else s.replace(",", "")
    m = _FRAC.match(s)
    try:
        if m:
            value = Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
        elif _DECIMAL_OR_RATIO.fullmatch(s):
            value = Fraction(s)
        else:
            return None
    except (ValueError, ZeroDivisionError):
        return None
    return value / 100 if percent else value
