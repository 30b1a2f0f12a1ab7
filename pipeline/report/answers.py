"""What kind of object each final answer is: integer, decimal, fraction, expression, interval, tuple or text.

A report question ("is this build all small integers?"), not a verifier one: the classes are decided by a few
regular expressions evaluated column-wise by Arrow (RE2), so a million answers classify in about a second. The
verifier's parser (``pipeline.verify``) would be more exact but costs a Python call (and sometimes sympy) per
row. Rules are tried in the order of ``ANSWER_TYPES``; the first that matches wins.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# \boxed{...}, $...$, \text{...} and surrounding spaces are presentation, not the answer
_WRAPPERS = (r"^\s*\\boxed\{(.*)\}\s*$", r"^\s*\$+(.*?)\$+\s*$", r"^\s*\\(?:text|textbf|mbox|mathrm)\{(.*)\}\s*$")
_NUMBER = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)"
_UNITS = r"(?:\s*(?:%|\\%|\\\$|dollars?|cents?|units?|degrees?|\^\\circ|°))?"

ANSWER_TYPES = ("none", "integer", "decimal", "fraction", "interval", "tuple", "expression", "text")
_RULES: dict[str, str] = {
    "none": r"^\s*$",
    "integer": rf"^\\?\$?{_NUMBER}(?:\.0+)?{_UNITS}\.?$",
    "decimal": rf"^\\?\$?[+-]?(?:{_NUMBER})?\.\d+{_UNITS}\.?$",
    "fraction": r"^[+-]?(?:\d+\s*/\s*\d+|\\[dt]?frac\{?[+-]?\d+\}?\{?\d+\}?|\d+\s+\d+/\d+)$",
    # infinity, a union, a square bracket on either side, or an inequality in one variable
    "interval": r"\\cup|^[\[(].*\\infty.*[\])]$|^\[.*,.*[\])]$|^\(.*,.*\]$|^[a-z]\s*(?:<|>|\\le|\\ge|\\lt|\\gt)",
    "tuple": r"^\(.*,.*\)$|^[^,(){}\[\]]+(?:,\s*[^,(){}\[\]]+)+$",
    "expression": r"\\[a-zA-Z]+|[\^_*/=+]|\d[a-zA-Z]|sqrt|\bpi\b|^[a-zA-Z]$|[a-zA-Z]\s*[-+*/^]|\d\s*-\s*\d",
}


def _unwrap(answers: pa.Array) -> pa.Array:
    """Strip ``\\boxed{}``, ``$...$`` and outer spaces so the rules see the bare answer."""
    text = pc.utf8_trim_whitespace(pc.fill_null(answers, ""))
    for pattern in _WRAPPERS:
        text = pc.replace_substring_regex(text, pattern=pattern, replacement=r"\1")
    return pc.utf8_trim_whitespace(text)


def classify_answers(answers: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Index into ``ANSWER_TYPES`` for each answer (``text`` when nothing else matched)."""
    if isinstance(answers, pa.ChunkedArray):
        answers = answers.combine_chunks() if answers.num_chunks else pa.array([], type=pa.string())
    text = _unwrap(answers)
    codes = np.full(len(text), ANSWER_TYPES.index("text"), dtype=np.int8)
    undecided = np.ones(len(text), dtype=bool)
    for name, pattern in _RULES.items():
        hit = pc.match_substring_regex(text, pattern=pattern).to_numpy(zero_copy_only=False) & undecided
        codes[hit] = ANSWER_TYPES.index(name)
        undecided &= ~hit
    return codes


def classify_answer(answer: str | None) -> str:
    """The type of one answer (the column-wise rules on a one-row column)."""
    return ANSWER_TYPES[int(classify_answers(pa.array([answer], type=pa.string()))[0])]
