"""Question gates: is a generated or rewritten question usable as a training problem?

Each rule is general (no quoted strings) and, where a source question is given, forgives what the source
already did: a source that states an equation or a number may be rewritten with it.
"""

from __future__ import annotations

import re
from fractions import Fraction

from .numbers import number_value, quantities, values_in
from .text import jaccard, sentences, shingles

QUESTION_REASONS = (
    "too_short",
    "too_long",
    "contains_solution",
    "leaks_answer",
    "not_a_question",
    "meta_text",
    "lost_quantities",
    "near_copy",
)

_NUM = r"\d[\d,]*(?:\.\d+)?"
_OP = r"(?:[-+*/×÷·x]|\\times|\\cdot|\\div)"
# "96 + 27 + 25 = 148", "2 liters × 0.20 = 0.4": numbers (each may carry a unit word) joined by operators, then
# "=" and a number (a computation carried out). A unit needs a space and two letters, so "2x + 3 = 7" is no chain.
_UNIT = r"(?:\s+[a-zA-Z]{2,12})?"
_CHAIN_RE = re.compile(
    rf"(?<![\w.^_{{}}]){_NUM}{_UNIT}(?:\s*{_OP}\s*\$?\s*{_NUM}{_UNIT})+\s*\$?\s*=\s*\$?\s*-?{_NUM}"
    rf"(?!\d|\.\d|\s*{_OP}|[a-zA-Z(])"
)
_EXAMPLE_RE = re.compile(r"\bfor\s+(?:example|instance)\b|\be\.g\.|\breminder\b|\bnotice\s+that\b", re.I)
_SOLUTION_MARKER_RE = re.compile(
    r"\\boxed|(?:^|\n)\s*####|<\s*/?\s*(?:answer|solution)\s*>"  # an <answer> block (MathSmith, real model)
    r"|(?:^|\n)\s*[*#_]*\s*(?:solution|step\s*\d+|final\s+answer|answer)\s*[*_]*\s*[:：]"
    r"|(?:^|\n)\s*(?:#+|\*\*)\s*(?:solution|step\s*\d+|final\s+answer|answer)\b"  # a heading
    r"|\b(?:the|final|correct)\s+answer\s+(?:is|would\s+be|=)\s*:?\s*[$\\]?\s*-?\d"
    r"|\blet(?:'s|\s+us)\s+(?:solve|calculate|compute|break\s+(?:it|this)|figure|work\s+(?:it|this|out)|add|subtract|multiply|divide)\b"
    r"|\bto\s+solve\s+(?:this|the\s+problem)\b"
    r"|\bwe\s+(?:can|will|first)\s+(?:calculate|compute)\b",
    re.I,
)
_DERIVED_CONNECTIVE_RE = re.compile(
    r"\b(?:which|this|that)\s+means\b|\btherefore\b|\bthus\b|\bhence\b|\bso\b|\bthat\s+makes\b|\bthis\s+gives\b"
    r"|\bresulting\s+in\b|\bwe\s+get\b|\bin\s+total\b|\baltogether\b",
    re.I,
)
_STRONG_CONNECTIVE_RE = re.compile(r"\b(?:which|this|that)\s+means\b|\btherefore\b|\bthus\b|\bhence\b", re.I)
# A number stated as a result: "is 30", "are currently 36", "= 148", "makes a total of 148".
_RESULT_CUE_RE = re.compile(
    r"(?:=|\b(?:is|are|was|were|be|equals?|equal\s+to|totals?|total\s+of|makes?|comes?\s+to|gives?|results?\s+in|resulting\s+in"
    r"|answer(?:\s+is)?))(?:\s+(?:now|currently|only|exactly|just|then|still|a|total|of|about|\w+ly)){0,3}"
    r"[\s$:\\(]*$",
    re.I,
)
# Without a source to tell given numbers from new ones, only an unmistakable statement of a result counts.
_STRONG_RESULT_CUE_RE = re.compile(
    r"(?:\banswer\s+(?:is|was|would\s+be|=|:)|\b(?:total|result|sum|product|difference|altogether|in\s+all)\s+(?:is|was|are|=)"
    r"|\btotal\s+of"
    r"|\bwhich\s+(?:is|makes|gives|equals))[\s$:\\(]*$",
    re.I,
)
_COMPARATIVE_AFTER_RE = re.compile(
    r"^[\w.,%]*\s*(?:\w+\s+)?(?:more|less|fewer|times|than|greater|smaller|older|younger|percent|%|per)\b",
    re.I,
)
# It asks: a question mark, "what" / "how many", multiple-choice options, an imperative ("Find", "…, compute")
# or an interrogative opening a sentence ("Which …", not the relative ", when Jolene was 15"). A "what" that only
# compares ("twice as much as what Sara spent", "more than what", "half of what") is a relative, not a question:
# an answer written as a statement passed with it (evolve, real model); an embedded "wondering what … is" asks.
_ASKS_RE = re.compile(
    r"\?|=\s*\$?\s*$|(?<!\bas\s)(?<!\bthan\s)(?<!\bof\s)(?<!\btwice\s)(?<!\btimes\s)\bwhat\b"
    r"|\bhow\s+(?:many|much|long|far|old|often|fast|tall|big)\b"
    r"|\(A\)[^\n]{0,400}?\(B\)"
    r"|(?:^|[.!:;,\n}\])$][\s$\\\])}]*|\b(?:please|then|now|and)\s+)(?:(?:completely|fully)\s+)?"
    r"(?:find|rewrite|remove|sum|compute|calculate|determine|evaluate|simplify|solve|express|show|prove|give|write"
    r"|list|enter|round|add|subtract|multiply|divide|convert|estimate|factor|expand|identify|work\s+out"
    r"|figure\s+out|tell|state|name|rationalize|graph|sketch|plot|use|order|arrange|approximate|decide|verify"
    r"|check|describe|explain|count|predict|select|choose|rank|fill)\b"
    r"|(?:^|[.!:;\n]\s*)(?:which|who|when|where|why)\b",
    re.I,
)
_META_RE = re.compile(
    r"\b(?:here(?:'s|\s+is|\s+are)|below\s+is|i\s+have|i've)\b[^.\n]{0,40}?\b(?:rewritten|revised|reworded|modified"
    r"|updated|adapted|new\s+version|version|new\s+problem|problem|question)\b"
    # a label opening a line: "Rewritten problem:", "Problem statement:", "The problem statement is:" (MathSmith)
    r"|(?:^|\n)\s*[*#_]*\s*(?:the\s+)?(?:(?:rewritten|revised|reworded|modified|updated|original|new|adapted"
    r"|persona[- ]?based)\s+)?(?:math\s+|word\s+)?(?:problem|question|version)(?:\s+statement)?"
    r"(?:\s+(?:is|reads|would\s+be))?\s*[*_]*\s*[:：]"
    r"|(?:^|\n)\s*(?:#+|\*\*)\s*(?:rewritten|revised|reworded|modified|updated|original|new|adapted)\s+"
    r"(?:math\s+|word\s+)?(?:problem|question|version)\b"  # a heading
    r"|\bnote\s*[:：][^\n]{0,160}?(?:\brewrit\w*|\boriginal\s+(?:problem|question)|\bpersona\b"
    r"|\b(?:have|has|were|was)\s+been\s+(?:kept|changed|adjusted|modified|preserved|replaced)\b"
    r"|\b(?:kept|changed|preserved|replaced)\s+(?:the|all|every)\b)"
    r"|\bi\s+(?:have\s+|'ve\s+)?(?:changed|rewrote|rewritten|kept|replaced|modified|adapted|reworded|preserved|"
    r"maintained|made\s+sure)\b"
    r"|^\s*(?:sure|certainly|of\s+course|okay|ok|absolutely)\b\s*[!,.:]"
    r"|\b(?:in\s+)?this\s+(?:rewritten|revised|reworded|modified|new)\s+(?:version|problem|question)\b"
    r"|\b(?:rewritten|revised|reworded|modified)\s+(?:math\s+)?(?:problem|question|version)\s+(?:is|reads|would\s+be)\b"
    r"|\bthe\s+original\s+(?:problem|question)\b|\bthe\s+(?:given\s+)?persona\b"
    r"|\b(?:problem|question)\s+(?:can|could)\s+be\s+(?:rewritten|rephrased|reworded|restated)\b"
    # the task's own instructions echoed back ("Rewrite the problem so that…", "Do not solve the problem.")
    r"|(?:^|\n|[.!:]\s+)(?:rewrite|rephrase|reword)\s+the\s+(?:following\s+)?(?:math\s+)?(?:problem|question)\b"
    r"|\bdo\s+not\s+solve\s+(?:it|the\s+(?:problem|question))\b",
    re.I,
)


# Cheap substring guards: a regex runs only when one of its words is in the text (the gates run on every
# candidate; a full regex scan costs tens of microseconds).
_SOLUTION_WORDS = ("\\boxed", "####", "answer", "solution", "step", "let", "solve", "we ")
_DERIVED_WORDS = (
    "means", "therefore", "thus", "hence", "so", "makes", "gives", "resulting", "we get", "total", "altogether",
)  # fmt: skip
_META_WORDS = (
    "here", "below", "i have", "i've", "problem", "question", "version", "note", "i ", "sure", "certainly",
    "course", "okay", "ok", "absolutely", "this ", "original", "persona", "rewritten", "revised", "reworded",
    "rewrite", "rephrase", "reword", "restated", "solve",
)  # fmt: skip


def _has_any(low: str, words: tuple[str, ...]) -> bool:
    return any(w in low for w in words)


def _forgiven(pattern: re.Pattern[str], source: str | None) -> bool:
    """The source question already does it (a given equation, a label), so its rewrite may too."""
    return source is not None and pattern.search(source) is not None


def _contains_solution(
    question: str, low: str, source: str | None, source_values: frozenset[Fraction] | None
) -> bool:
    if (
        _has_any(low, _SOLUTION_WORDS)
        and _SOLUTION_MARKER_RE.search(question)
        and not _forgiven(_SOLUTION_MARKER_RE, source)
    ):
        return True
    if "=" in question:
        src_despaced = re.sub(r"\s+", "", source) if source else ""
        for m in _CHAIN_RE.finditer(question):
            if re.sub(r"\s+", "", m.group(0)) not in src_despaced and not _in_example(question, m.start()):
                return True
    return _has_any(low, _DERIVED_WORDS) and _states_derived_result(question, source_values)


def _in_example(text: str, pos: int) -> bool:
    """The computation illustrates a definition ("For example, 5! = 5·4·3·2·1 = 120"): part of the problem."""
    start = max(text.rfind(". ", 0, pos), text.rfind("\n", 0, pos), text.rfind("(", 0, pos), 0)
    return _EXAMPLE_RE.search(text, start, pos) is not None


def _states_derived_result(question: str, source_values: frozenset[Fraction] | None) -> bool:
    """A statement that derives a value ("…which means Jolene is 30 years old"): with a source, a result
    number the source does not have after any connective; without one, after "which means / therefore / thus"."""
    connective = _DERIVED_CONNECTIVE_RE if source_values is not None else _STRONG_CONNECTIVE_RE
    for sentence in sentences(question):
        if sentence.rstrip().endswith("?"):
            continue
        cue = connective.search(sentence)
        if not cue:
            continue
        for q in quantities(sentence[cue.end() :]):
            start = cue.end() + q.start
            if source_values is not None and q.values & source_values:
                continue
            if _RESULT_CUE_RE.search(
                sentence[max(0, start - 40) : start]
            ) and not _COMPARATIVE_AFTER_RE.match(sentence[start + len(q.text) :]):
                return True
    return False


def _answer_key(answer: str) -> Fraction | str | None:
    value = number_value(answer)
    if value is not None:
        return value
    text = re.sub(r"\s+|\$|\\[,;!]|\\left|\\right", "", answer)
    return text if len(text) >= 2 else None


def _leaks_answer(
    question: str, answer: str, source: str | None, source_values: frozenset[Fraction] | None
) -> bool:
    """The answer appears as a stated result ("… is 148", "= 148"), and the source did not state it."""
    key = _answer_key(answer)
    if key is None:
        return False
    if isinstance(key, str):
        if source is not None and key in re.sub(r"\s+|\$", "", source):
            return False
        flat = re.sub(r"\s+|\$", "", question)
        cue = r"(?:=|is|are|answer(?:is)?:?)" if source is not None else r"answer(?:is|:)"
        return bool(re.search(cue + re.escape(key) + r"(?![\w^{])", flat))
    if source_values is not None and key in source_values:
        return False
    cue = _RESULT_CUE_RE if source_values is not None else _STRONG_RESULT_CUE_RE
    for q in quantities(question):
        if key == q.value and cue.search(question[max(0, q.start - 40) : q.start]):
            after = question[q.end :]
            if not _COMPARATIVE_AFTER_RE.match(after) and not after.lstrip().startswith("?"):
                return True
    return False


def _lost_quantities(question: str, source: str) -> bool:
    kept = values_in(question)
    return any(q.required and not q.values & kept for q in quantities(source))


def _near_copy(question: str, source: str, threshold: float) -> bool:
    """Nearly the same words (word-set Jaccard), or the source kept verbatim with a sentence added around it
    (share of the source's word 3-grams found in the question): either way the rewrite is not visible."""
    if jaccard(shingles(question, 1), shingles(source, 1)) >= threshold:
        return True
    source_grams = shingles(source)
    return bool(source_grams) and len(source_grams & shingles(question)) / len(source_grams) >= threshold


def question_problems(
    question: str,
    *,
    source: str | None = None,
    answer: str | None = None,
    keeps_quantities: bool = False,
    min_chars: int = 20,
    max_chars: int = 4000,
    near_copy: float = 0.9,
) -> list[str]:
    """Why a generated or rewritten question is unusable ([] when it is usable); the first reason is the main one.

    `source`: the question it was made from (forgives what the source already did; enables near_copy);
    `answer`: the gold or new answer, which the question must not state; `keeps_quantities`: the method keeps
    the answer, so every quantity of the source must still be there (in digits or words).
    """
    if not isinstance(question, str):
        raise TypeError(f"question must be str, got {type(question).__name__}")
    text = question.strip()
    low = text.lower()
    found: set[str] = set()
    if len(text) < min_chars:
        found.add("too_short")
    if len(text) > max_chars:
        found.add("too_long")
    source_values = values_in(source) if source is not None else None
    if _contains_solution(text, low, source, source_values):
        found.add("contains_solution")
    if answer is not None and answer.strip() and _leaks_answer(text, answer, source, source_values):
        found.add("leaks_answer")
    if "?" not in text and not _ASKS_RE.search(text):
        found.add("not_a_question")
    if _has_any(low, _META_WORDS) and _META_RE.search(text) and not _forgiven(_META_RE, source):
        found.add("meta_text")
    if keeps_quantities and source is not None and _lost_quantities(text, source):
        found.add("lost_quantities")
    if source is not None and _near_copy(low, source, near_copy):
        found.add("near_copy")
    return [r for r in QUESTION_REASONS if r in found]
