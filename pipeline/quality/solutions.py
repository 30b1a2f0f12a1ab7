"""Solution gates: does a sampled solution commit to one answer that its own working supports?

The committed answer is the verifier's (`extract_answer`, which already knows revisions: "wait … so the
answer is 14"); these gates look at what the extractor does not judge: earlier commitments that disagree with
the final one, a final answer that the last computed value contradicts, a solution with no working, an echo.
"""

from __future__ import annotations

import re
from fractions import Fraction

from pipeline.verify import extract_answer
from pipeline.verify.compare import Judge
from pipeline.verify.core import parsed_gold
from pipeline.verify.extract import _REVISION_RE, _boxes

from .numbers import number_value, quantities, values_in
from .text import last_match, sentences, shingles

SOLUTION_REASONS = (
    "no_answer",
    "echoes_prompt",
    "empty_reasoning",
    "several_answers",
    "answer_contradicts_work",
    "answer_not_derived",
)

ECHO_SHARE = 0.8  # share of the solution's word 3-grams found in the prompt/question that makes it an echo
_ECHO_MIN_SHINGLES = 12  # shorter solutions are judged by empty_reasoning, not as echoes

_COMMIT_RE = re.compile(
    r"(?:^|\n)\s*####|\b(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is|would\s+be|should\s+be|will\s+be|equals|=|:)",
    re.I,
)
# What introduces a final answer of its own: "The final answer is", "Answer:", "####", a line to itself.
_INTRO_RE = re.compile(
    r"(?:(?:\b(?:so|thus|therefore|hence)\b[\s,]*)?(?:(?:the|our|my)\s+)?(?:final\s+|correct\s+)?answer\s*"
    r"(?:is|would\s+be|should\s+be|will\s+be|equals|=|:)?\s*:?|(?:^|\n)\s*####|(?:^|\n)|[.!?])[\s$\\(\[*]*$",
    re.I,
)
_STRONG_COMMIT_RE = re.compile(
    r"(?:^|\n)\s*####|\b(?:the\s+)?(?:final\s+|correct\s+)?answer\s+is\b|(?:^|\n)\s*[*_#]*(?:final\s+)?answer[*_]*\s*:",
    re.I,
)
# A sentence ends at ". X" / "? X" / a line break; "6! \\times" and "9! =" are factorials, not ends.
_SENTENCE_BOUNDARY_RE = re.compile(r"\.(?:\$|\\\]|\\\))*\s+(?=[A-Z$\\])|[!?](?:\$)*\s+(?=[A-Z])|\n")
# Words that take back an earlier answer (beyond the extractor's "wait", "actually", "mistake", …).
_SENTENCE_END_RE = re.compile(r"\.(?:\$|\\\]|\\\))*\s+(?=[A-Z$\\])|[!?]\$*\s+(?=[A-Z])|\n\s*\n")
_TAKEN_BACK_RE = re.compile(
    r"\b(?:however|but|instead|tempted|overcount\w*|incorrect|correction|corrected)\b", re.I
)
_ASSIGNMENT_RE = re.compile(r"(?<![\w\\])[a-zA-Z]\w*\s*=\s*-?\d")
_REASON_CLAUSE_RE = re.compile(r"\b(?:since|because|as\s+there|given\s+that)\b[^,]*(?:,|$)", re.I)
_RESULT_RE = re.compile(
    r"(?:=|\b(?:is|are|was|were|equals|be)\b)(?:\s+(?:\w+ly|now|only|just|a\s+total\s+of|total|about))*[\s$\\(]*"
    r"(-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?|\\[dt]?frac\{\d+\}\{\d+\})(?![\d.]*[a-zA-Z(^_{])",  # "= 26y" is no value
    re.I,
)
_COMPUTATION_RE = re.compile(
    r"[\d)}]\s*(?:[-+*/×÷^]|\\(?:times|cdot|div))\s*[\d({\\]|=\s*[-\d(\\]|\\(?:frac|sqrt|binom)"
)
_WORK_RE = re.compile(r"\d|[=+*/×÷^<>]|\\(?:frac|sqrt|cdot|times|le|ge)|\s-\s")
_FILLER_RE = re.compile(
    r"\b(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is|:)?|####|\bI\s+hope\s+it\s+is\s+correct\b", re.I
)


class _Undecided(Exception):
    """The comparison would need sympy: the gates do not run it (they must stay fast and in-process)."""


def _escalate(*_: object) -> bool:
    raise _Undecided


def same_answer(a: str, b: str) -> bool | None:
    """Whether two final answers are the same (fast, in-process paths of the verifier); None: undecided."""
    if a.strip() == b.strip():
        return True
    va, vb = number_value(a), number_value(b)
    if va is not None and vb is not None:
        return va == vb
    try:
        return Judge(_escalate).match(a, b, parsed_gold(b))[0]
    except _Undecided:
        return None
    except Exception:  # a comparison the verifier cannot make is not evidence of two answers
        return None


def _differs(a: str, b: str) -> bool:
    return same_answer(a, b) is False


def _final_commitment(text: str, final: str) -> tuple[int, int, list[tuple[int, int, str]]] | None:
    """(start, end) of the final commitment, and the boxes before it; None if it cannot be located."""
    boxes = [(b.start, b.end, b.text) for b in _boxes(text)[0]]
    parts = {p.strip() for p in final.split(",")} | {final.strip()}
    if boxes and boxes[-1][2].strip() in parts | {final.strip()}:
        i = len(boxes) - 1
        while i > 0 and boxes[i - 1][2].strip() in parts and boxes[i][0] - boxes[i - 1][1] <= 40:
            i -= 1
        return boxes[i][0], boxes[-1][1], boxes[:i]
    last = last_match(_COMMIT_RE, text)
    if last is None:
        return None
    return last.start(), len(text), [b for b in boxes if b[1] <= last.start()]


def _revised_between(text: str, start: int, end: int) -> bool:
    return (
        _REVISION_RE.search(text, start, end) is not None
        or _TAKEN_BACK_RE.search(text, start, end) is not None
    )


def _sentence_start(text: str, pos: int) -> int:
    """Start of the sentence or line holding `pos` (looked for in the 600 characters before it)."""
    window = max(0, pos - 600)
    boundary = last_match(_SENTENCE_BOUNDARY_RE, text, window, pos)
    return boundary.end() if boundary else window


_GIVEN_ANSWER_RE = re.compile(r"\banswer\b[^.?!\n]{0,60}?\b(?:is|was|=)\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?(?:/\d+)?)", re.I)


_UNKNOWN_RE = re.compile(r"\bunknown\s+variable\s+([a-zA-Z])\b")


def _restates_given(previous: str, question: str) -> bool:
    """A backward question (FOBAR, SV) gives the forward answer and names its unknown: "the answer is 150" or
    "this answer is equal to x × 28 + 10" restates what it gave, not a second answer."""
    given = {v for m in _GIVEN_ANSWER_RE.finditer(question) if (v := number_value(m.group(1))) is not None}
    if given and values_in(previous) & given:
        return True
    unknown = _UNKNOWN_RE.search(question)
    return unknown is not None and re.search(rf"(?<![a-zA-Z\\]){unknown.group(1)}(?![a-zA-Z])", previous) is not None


def _several_answers(text: str, final: str, start: int, earlier: list[tuple[int, int, str]],
                     question: str | None = None) -> bool:
    """An earlier committed answer (a box, "####", "the answer is", "Answer:") that differs from the final one
    and is not revised ("wait", "actually", "mistake") before it. A backward question states an answer itself
    and its unknown ("If we know the answer to the above question is 150, what is the value of unknown variable
    x?"): restating that answer, or an expression in x, is no second answer."""
    for _b_start, b_end, value in earlier:
        if _differs(value, final) and not _revised_between(text, b_end, start):
            return True
    prefix = text[: _sentence_start(text, start)]
    if "answer" not in prefix.lower() and "####" not in prefix:
        return False
    commitment = last_match(_STRONG_COMMIT_RE, prefix)
    if commitment is None:
        return False
    if not _SENTENCE_END_RE.search(text, commitment.end(), start):
        return False  # "the answer is 9! = \boxed{362880}": one chain ending in the final answer
    previous = extract_answer(prefix[commitment.start() :])
    if previous is not None:  # "The answer is therefore 3."
        previous = re.sub(r"^(?:therefore|thus|hence|so|then|clearly)\s+", "", previous, flags=re.I)
    if previous is None or not re.search(r"[\d\\$]", previous) or not _differs(previous, final):
        return False
    if question is not None and _restates_given(previous, question):
        return False
    return not _revised_between(text, commitment.end(), start)


def _result_value(match: re.Match[str]) -> Fraction | None:
    """The value a ``_RESULT_RE`` match states ("= 1 200" -> 1200, "is 3/5" -> 3/5)."""
    return number_value(match.group(1).replace(" ", ""))


def _last_results(before: str) -> tuple[Fraction | None, list[Fraction]]:
    """The value the working ends on, and every value its last sentence states.

    The ending value is the last "= value" / "is value" of the last sentence with a number in it, when nothing
    else follows it there (a value followed by more numbers or words is an intermediate step): None otherwise.
    """
    tail = [s for s in sentences(before) if s.strip()]
    while tail and not re.search(r"\d", tail[-1]) and len(tail[-1].strip()) < 40:
        tail.pop()
    if not tail:
        return None, []
    last_sentence = tail[-1]
    # "… = 60 people, since there are 2 sexes" / "since he shared 300, he got … = 220": a premise, not a result
    last_sentence = _REASON_CLAUSE_RE.sub(" ", last_sentence)
    results = list(_RESULT_RE.finditer(last_sentence))
    stated = [v for v in map(_result_value, results) if v is not None]
    if not results:
        if not re.search(r"[.!?:\n]\s*$", before):
            return (
                None,
                [],
            )  # "…only one of these 15 is correct, so the answer is": the answer sentence reasons
        restated = _restated_result(last_sentence, tail[-4:-1])
        return restated, [] if restated is None else [restated]
    after = last_sentence[results[-1].end() :]
    if re.search(r"\d", after) or len(re.findall(r"[A-Za-z]+", after)) > 4:
        return None, stated  # more work follows the value: it is an intermediate step
    if len(_ASSIGNMENT_RE.findall(last_sentence)) > 1:
        return None, stated  # "a = 3 and b = 8": the answer may combine them
    return _result_value(results[-1]), stated


def _restated_result(sentence: str, earlier: list[str]) -> Fraction | None:
    """A closing sentence that restates one computed value ("…= 280. Each neighbor receives 280 mangoes."):
    its only number, when the sentences just before computed it."""
    values = {q.value for q in quantities(sentence) if q.text[0].isdigit()}  # not the "zero" of "non-zero"
    if len(values) != 1:
        return None
    (value,) = values
    for before in earlier:
        for result in _RESULT_RE.finditer(before):
            if _result_value(result) == value:
                return Fraction(value)
    return None


def _consistent(final: Fraction, computed: Fraction) -> bool:
    """The final answer restates the computed value: equal, a percentage of it, or it rounded to a whole."""
    if final == computed or final == computed * 100 or final * 100 == computed:
        return True
    return final.denominator == 1 and computed.denominator != 1 and abs(final - computed) < 1


def _contradicts_work(text: str, final: str, start: int) -> bool:
    """A final answer of its own (after "The final answer is", "####", or on its own line) that the value the
    working ends on contradicts. Inline boxes ("= \\boxed{5}") are the working's own result: not checked."""
    intro = _INTRO_RE.search(text, max(0, start - 80), start)
    if intro is None:
        return False
    value = number_value(final)
    if value is None:
        return False
    computed, stated = _last_results(text[: intro.start()])
    return computed is not None and not any(_consistent(value, v) for v in stated)


_INLINE_BOX_RE = re.compile(
    r"(?:[=<>]|\\(?:in|equiv|approx|cong|le|ge|leq|geq)|\b(?:is|are|was|were|be|equals|of|solutions?|roots?)\b)"
    r"[\s$\\\[(]*$",
    re.I,
)
_ANSWER_PHRASE_RE = re.compile(r"\banswer\s*(?:is|:)?\s*\$*\s*$|(?:^|\n)\s*[*_#]*\s*solution\s*[*_]*\s*:\s*\$*\s*$", re.I)
_LIST_MARKER_RE = re.compile(r"(?m)^\s*(?:step\s*)?\d+[.)]\s")


def _derives(text: str, final: str, start: int) -> bool:
    """The working reaches the answer it boxes. Shown the answer, a weak model writes steps that never arrive
    at it and then boxes it ("Therefore, Jim finds \\boxed{25} gold per hour" with 25 nowhere before): the box is
    copied from the prompt. Derived: the box ends a statement of its own ("= \\boxed{128}", "their average is
    \\boxed{5}", not "the answer is" / "Solution:"), or the answer's value already appears in the working
    (numbered-list markers aside). Numeric answers only."""
    before = text[max(0, start - 40) : start]  # `start`: where the final answer is committed to
    if _INLINE_BOX_RE.search(before) and not _ANSWER_PHRASE_RE.search(before):
        return True
    value = number_value(final)
    if value is not None:
        reasoning = _LIST_MARKER_RE.sub(" ", _reasoning(text[:start]))
        if any(_consistent(value, Fraction(v)) for q in quantities(reasoning) for v in q.values):
            return True
        stated = map(_result_value, _RESULT_RE.finditer(reasoning))  # "is 3/5", which quantities() splits
        return any(v is not None and _consistent(value, v) for v in stated)
    return True  # an expression, an interval, a choice: its derivation is not checked (written too many ways)


def _reasoning(text: str) -> str:
    """The solution without its boxes and answer phrases: what is left to show the work."""
    spans = [(b.start, b.end) for b in _boxes(text)[0]]
    kept, pos = [], 0
    for s, e in spans:
        kept.append(text[pos:s])
        pos = e
    kept.append(text[pos:])
    return _FILLER_RE.sub(" ", "".join(kept))


def _empty_reasoning(text: str, min_chars: int) -> bool:
    """Nothing shown but the answer: a short rest with no computation in it, or a longer one that never
    touches a number or a formula ("To solve this, we find the total. The final answer is …")."""
    rest = _reasoning(text)
    size = len(re.sub(r"\s+", "", rest))
    if size < min_chars and not _COMPUTATION_RE.search(rest):
        return True
    return size < 3 * min_chars and not _WORK_RE.search(rest) and not quantities(rest)


def _echoes(text: str, question: str | None, prompt: str | None) -> bool:
    own = shingles(text)
    if len(own) < _ECHO_MIN_SHINGLES:
        return False
    ref: set[tuple[str, ...]] = set()
    for given in (question, prompt):
        if given:
            ref |= shingles(given)
    return bool(ref) and len(own & ref) / len(own) >= ECHO_SHARE


def solution_problems(
    solution: str,
    *,
    question: str | None = None,
    prompt: str | None = None,
    min_reasoning_chars: int = 30,
    final_answer: str | None = None,
    answer_shown: bool = False,
) -> list[str]:
    """Why a sampled solution is unusable ([] when usable); the first reason is the main one.

    `question` / `prompt`: what the model was given (an echo of them is not a solution). `final_answer`: the
    answer `extract_answer(solution)` gave, when the caller has it already (saves extracting it twice).
    `answer_shown`: the prompt gave the model the answer (a rewrite of a known solution), so its working must
    reach that answer itself (``answer_not_derived`` otherwise).
    """
    if not isinstance(solution, str):
        raise TypeError(f"solution must be str, got {type(solution).__name__}")
    found: set[str] = set()
    final = final_answer if final_answer is not None else extract_answer(solution)
    if final is None:
        found.add("no_answer")
    if _echoes(solution, question, prompt):
        found.add("echoes_prompt")
    if _empty_reasoning(solution, min_reasoning_chars):
        found.add("empty_reasoning")
    located = _final_commitment(solution, final) if final is not None else None
    if final is not None and located is not None:
        start, _end, earlier = located
        if _several_answers(solution, final, start, earlier, question):
            found.add("several_answers")
        elif _contradicts_work(solution, final, start):
            found.add("answer_contradicts_work")
    if answer_shown and final is not None and not _derives(solution, final, located[0] if located else len(solution)):
        found.add("answer_not_derived")
    return [r for r in SOLUTION_REASONS if r in found]
