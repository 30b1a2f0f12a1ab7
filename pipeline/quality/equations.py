"""Equations in a solution that are false at the known value of its unknown.

A backward question (FOBAR, Self-Verification) knows its unknown: x is the number that was masked. A weak solver
often writes a wrong equation and still boxes the right x (seen on a real model: "(x + 10) = 2x + 10 ... 10 = x",
then "2x + 10 = 22, x = 6"); answer checking keeps such a solution. Every equation in it that mentions x and
nothing else unknown must hold at that x.

Conservative by construction: a side the verifier's parser cannot read, or that has another unknown, a unit, text,
or an inequality or approximation nearby, is skipped, so a false report needs an equation that parses completely
and is wrong. Pure and fast: the verifier's parser and exact evaluator (no sympy; huge work raises and is skipped).
"""

from __future__ import annotations

import re
from fractions import Fraction

from pipeline.verify.evaluate import exact
from pipeline.verify.parse import has_symbols, parse_answer

_MATH_RE = re.compile(r"\\\[(.+?)\\\]|\$\$(.+?)\$\$|\\\((.+?)\\\)|\$([^$\n]+?)\$", re.S)
_FORMULA_LINE_RE = re.compile(r"^[\s\d.,xX+\-*/×÷−·=()]+$")
_SKIP_RE = re.compile(r"[<>≈≠≤≥:;]|\\(?:le|ge|leq|geq|ne|neq|approx|sim|pm|mp|Rightarrow|implies|to|quad|text|mathrm)\b")
_MAX_CHARS = 200


def _pieces(text: str) -> list[str]:
    """Math segments (display and inline) split at line breaks, and plain lines that are only a formula."""
    found: list[str] = []
    for m in _MATH_RE.finditer(text):
        body = next(g for g in m.groups() if g is not None)
        found += [p.replace("&", " ") for p in re.split(r"\\\\|\n", body)]
    for line in _MATH_RE.sub(" ", text).splitlines():
        line = re.sub(r"^\s*(?:[-*]|\d+[.)])\s+", "", line)  # a list marker
        if "=" in line and _FORMULA_LINE_RE.match(line):
            found.append(line)
    return [p.strip() for p in found if "=" in p and len(p) <= _MAX_CHARS]


def _value(side: str, env: dict[str, Fraction]) -> tuple[Fraction | None, bool]:
    """(value, mentions the unknown); None when the side is not a number-and-unknown expression."""
    try:
        node = parse_answer(side)
        value = exact(node, env)
    except Exception:  # noqa: BLE001 - unreadable, another unknown, a unit, too big: not ours to judge
        return None, False
    if not isinstance(value, Fraction):
        return None, False
    return value, has_symbols(node)  # the evaluator knows only the unknown: any symbol left is it


def _differ(a: Fraction, b: Fraction) -> bool:
    """Beyond rounding: a solution may write a rounded decimal after "="."""
    return abs(a - b) > max(Fraction(1, 100), abs(max(a, b, key=abs)) / 1000)


def false_equations(solution: str, var: str, value: str) -> list[str]:
    """The equations of `solution` that mention `var` and are false with `var` = `value` (a number)."""
    try:
        target = exact(parse_answer(value))
    except Exception:  # noqa: BLE001 - a value we cannot read: nothing to check against
        return []
    if not isinstance(target, Fraction):
        return []
    env = {var: target}
    wrong = []
    for piece in _pieces(solution):
        if _SKIP_RE.search(piece):
            continue
        sides = [s.strip() for s in piece.split("=")]
        if len(sides) < 2 or not all(sides):
            continue
        values = [_value(s, env) for s in sides]
        if any(v is None for v, _ in values) or not any(uses for _, uses in values):
            continue
        first = values[0][0]
        if any(_differ(first, v) for v, _ in values[1:]):
            wrong.append(piece)
    return wrong
