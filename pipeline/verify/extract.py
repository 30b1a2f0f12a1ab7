"""Find the final answer a model committed to in free text.

Every explicit commitment is a candidate: `\\boxed{}` / `\\fbox{}` (nested braces), GSM8K `#### N`, Minerva
"Final Answer: The final answer is $X$. I hope it is correct.", "the answer is X" in several languages, "Answer $X$"
and "So $X$ is the answer." The latest one in the text wins, so a revision ("wait ... so the answer is 14") beats
an earlier box; boxes joined only by a conjunction, or boxing parts (a), (b), ... of one question, are one answer;
a box its own sentence sets aside ("note that \\boxed{12} would be ... if") does not replace the box before it.
A code block's printed output is used only when nothing else was committed. No commitment, a hedge between values,
doubt after the answer, or a truncated output give None: the extractor never guesses (no "last number" fallback).
See docs/verification.md for the conventions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .units import unit_info

MAX_ANSWER_CHARS = 300
MAX_PHRASE_WINDOWS = 40


@dataclass(frozen=True)
class Candidate:
    start: int
    end: int
    text: str
    kind: str  # box | phrase | hashes | output


_BOX_RE = re.compile(r"\\(?:boxed|fbox|framebox)(?![a-zA-Z])(?:\[[^\]]*\])?")
_HASHES_RE = re.compile(r"^\s*####\s*(.+?)\s*$", re.M)
_MINERVA_RE = re.compile(
    r"final answer is\s*\$((?:[^$]|(?<=\\)\$)+?)\$\s*\.?\s*I hope it is correct", re.I | re.S
)  # the answer holds no unescaped `$`: an earlier "our final answer is $8000$." does not swallow the line

_EN = (
    r"(?:the\s+)?(?:final\s+|correct\s+)?answer"
    r"(?:\s+to\s+(?:the|this|our)\s+(?:question|problem)|,?\s+(?:therefore|then|thus|hence|clearly),?)?"
    r"\s*(?:is\b|would\s+be\b|should\s+be\b|will\s+be\b|equals\b|=|:)"
    r"|(?:^|\n)\s*[#*_ ]*(?:final\s+)?answer[*_ ]*\s*[:：—–]"
    r"|(?:^|\n)\s*[#*_ ]*answer[*_ ]*[ \t]*\n"
    r"|final\s+answer\s*[:：]?\s*(?=\$|\\\(|\\\[|\\boxed)"
    r"|(?:^|\n)\s*[#*_ ]*final\s+answer[*_ ]*[ \t]*\n"
    r"|(?:^|\n|(?<=[.!?])[ \t])[ \t]*[#*_ ]*(?:final\s+)?answer[*_ ]*[ \t]+"
    r"(?=\$|\\\(|\\\[|-?\d[\d.,/]*[ \t]*(?:\n|$))"
    r"|correct\s+(?:option|choice)\s+is|answer\s+(?:option|choice)\s+is"
)
_OTHER = (
    r"la\s+respuesta(?:\s+final)?\s+es|respuesta(?:\s+final)?\s*:"
    r"|la\s+r[ée]ponse(?:\s+finale)?\s+est|r[ée]ponse(?:\s+finale)?\s*:"
    r"|die\s+(?:endg[üu]ltige\s+)?antwort\s+(?:ist|lautet)|antwort\s*:"
    r"|la\s+risposta(?:\s+finale)?\s+[èe]|risposta(?:\s+finale)?\s*:"
    r"|a\s+resposta(?:\s+final)?\s+[ée]|resposta(?:\s+final)?\s*:"
    r"|het\s+antwoord\s+is|antwoord\s*:"
    r"|(?:окончательный\s+)?ответ\s*(?::|—|-|равен|будет)"
    r"|jawaban(?:nya)?(?:\s+akhir)?\s*(?:adalah|:)"
    r"|đáp\s+án\s*(?:là|:)|câu\s+trả\s+lời\s*(?:là|:)"
    r"|cevap\s*(?::|is)|yan[ıi]t\s*:"
    r"|(?:最终)?答案(?:是|为|為|:|：)|答えは|答え\s*[:：]|解答\s*[:：]"
    r"|정답은|답은|정답\s*[:：]|답\s*[:：]"
    r"|उत्तर\s+है|الإجابة\s+هي"
)
_PHRASE_RE = re.compile(r"(?:" + _EN + "|" + _OTHER + r")[ \t]*[*_]*[ \t]*(?:[:：][ \t]*)?", re.I)
_NOT_A_COMMITMENT_RE = re.compile(
    r"(?:\bif|\bwhether|\bsuppose|\bassume|\bassuming|\bcheck|\bverify|\bcheck\s+that|\bsure)\s+(?:\w+\s+){0,3}$",
    re.I,
)
_JUDGEMENT_RE = re.compile(
    r"^(?:not\b|correct|incorrect|right|wrong|indeed|consistent|reasonable|valid|invalid|plausible|"
    r"as\s+follows|below|above|the\s+same|yes,|no,|that\b|this\b|in\s+the\b|given\s+by|found|clear|"
    r"obtained|calculated|computed|determined|unknown|to\b|in\b|also\b|still\b|now\b|then\b)",
    re.I,
)
_HEDGE_RE = re.compile(
    r"\b(?:not\s+(?:sure|certain)|unsure|uncertain|or\s+(?:maybe|possibly|perhaps)|either\b(?=[^.]*\bor\b)|might\s+be|"
    r"could\s+(?:also\s+)?be|can't\s+decide|cannot\s+decide|probably)\b",
    re.I,
)
_WEAK_MODAL_RE = re.compile(r"^(?:might|could)\b", re.I)
# "the number of ways the books could be arranged is 19": the modal describes the quantity, not the answer.
_DESCRIPTION_RE = re.compile(
    r"\b(?:that|which|who|whom|whose|where|how|ways?|number|many|much|largest|smallest|greatest|least|most|"
    r"maximum|minimum|possible|values?\s+of)\b[^.,;!?]*$",
    re.I,
)
_STRONG_HEDGE_RE = re.compile(r"\b(?:not\s+(?:sure|certain)|unsure|or\s+(?:maybe|possibly|perhaps))\b", re.I)
_REVISION_RE = re.compile(
    r"\b(?:wait|hold\s+on|hmm+|actually|let\s+me\s+re-?(?:check|compute|calculate|do|examine|consider)|mistake|"
    r"recalculate|re-?evaluate|that'?s\s+(?:not\s+right|wrong))\b",
    re.I,
)
_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)```", re.S)
# Footnote markers after an answer: "42 [1]", "42[^1]", "42†", "42*", "42.¹" (a bare "x²" is an exponent).
_FOOTNOTE_RE = re.compile(r"(?:\s*(?:\[\^?\d+\]|\[[a-z]\]|†|‡|\*+)|(?<=[.,;:!?)\s])[¹²³⁴⁵⁶⁷⁸⁹⁰]+)+$")
_VALUE_OR_VALUE_RE = re.compile(r"^\$?-?[\d.,/\\{}a-z]+\$?\s+or\s+\$?-?[\d.,/\\{}a-z]+\$?$", re.I)


def _match_brace(text: str, open_pos: int) -> int | None:
    """Index just past the `}` closing the `{` at open_pos (respecting nesting and `\\{`), or None."""
    depth = 0
    i = open_pos
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _boxes(text: str) -> tuple[list[Candidate], int | None]:
    """All boxed answers, and the position of an unclosed box (a truncated output) if any."""
    out: list[Candidate] = []
    unclosed = None
    for m in _BOX_RE.finditer(text):
        j = m.end()
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            end = _match_brace(text, j)
            if end is None:
                unclosed = m.start()
                continue
            out.append(Candidate(m.start(), end, text[j + 1 : end - 1], "box"))
        elif j > m.end():  # `\boxed 5`
            tok = re.match(r"[^\s$]+", text[j:])
            if tok:
                out.append(Candidate(m.start(), j + tok.end(), tok.group(0).rstrip(".,;"), "box"))
    return out, unclosed


def _find_closer(rest: str, closer: str, pos: int) -> int:
    """Position of the math-mode closer, skipping escaped dollars (`\\$`); -1 if there is none."""
    while True:
        close = rest.find(closer, pos)
        if close < 0 or not (closer.startswith("$") and rest[close - 1] == "\\"):
            return close
        pos = close + 1


def _span_after(text: str, start: int) -> tuple[str, int] | None:
    """The answer that follows a phrase like "the answer is": a math span, or the rest of the sentence."""
    rest = text[start : start + 2000]
    m = re.match(r"\s*(\$\$|\$|\\\(|\\\[)", rest)
    if m:
        closer = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}[m.group(1)]
        close = _find_closer(rest, closer, m.end())
        if close >= 0:  # otherwise a lone `$` is a currency sign: read the sentence
            inner = rest[m.end() : close]
            tail = rest[close + len(closer) :]
            unit = re.match(r"[ \t]*([A-Za-z][A-Za-z ]{0,20}?)(?=[.,;!?\n]|$)", tail)
            if unit and not re.match(
                r"\s*(?:and|or|because|since|which|so|as|for|if|when|but)\b", unit.group(1)
            ):
                inner = f"{inner} {unit.group(1)}"
            return inner, start + close + len(closer)
    if re.match(r"\s*\\boxed", rest):
        return None  # the box itself is a candidate
    lead = len(rest) - len(rest.lstrip())
    start += lead
    rest = rest[lead:]
    line = rest.split("\n", 1)[0][: MAX_ANSWER_CHARS + 100]
    cut = len(line)
    for pat in (
        r"\.(?=\s|$)",
        r"。",
        r"[,;]\s*(?:so|because|since|which|as|and\s+(?:this|that|the|we|so)|where|given|therefore|thus|hence|"
        r"I|I'm|but|although|though|maybe|perhaps|probably|or\s+maybe)\b",
        r"\s+(?:because|since|which|as\s+(?:the|we|it|this)|so\s+that|given\s+that|\(since|\(because)\b",
        r"\s+\(",
        r"!",
        r"\?",
        r"\s*(?:です|입니다|이다)",
    ):
        m2 = re.search(pat, line)
        if m2 and m2.start() < cut:
            cut = m2.start()
    answer = line[:cut]
    return answer, start + cut


_WHICH_IS_RE = re.compile(r",\s*which\s+(?:is|equals|comes\s+to)\s+", re.I)
_OPTION_CORRECT_RE = re.compile(
    r"\b(?:option|choice|answer)\s*\(?\s*([A-E])\s*\)?\s+is\s+(?:the\s+)?(?:correct|right)\b"
    r"|\(([A-E])\)\s+is\s+(?:the\s+)?(?:correct|right)\b"
)
_SENTENCE_ANSWER_RE = re.compile(
    r"^(?:the|so|thus|therefore|hence)\b[^=\n]{0,160}?\b(?:is|are|equals|was|will\s+be)\s+(.+)$", re.I
)
# "So $5$ is the answer.", "Thus $x \le 2$ is our answer.", "which is the final answer": the value comes first.
_IS_THE_ANSWER_RE = re.compile(
    r"(?:,?\s*which)?\s+(?:is|was|would\s+be|must\s+be|should\s+be)\s+(?:indeed\s+|therefore\s+|then\s+)?"
    r"(?:the|our|my)\s+"
    r"(?:final\s+|correct\s+|desired\s+|required\s+)?answer\b(?!\s*\?|\s+(?:if|when|only|unless)\b)",
    re.I,
)
_VALUE_BEFORE_RE = re.compile(
    r"(?:\$\$(.+?)\$\$|\$((?:[^$\\]|\\.)+?)\$|\\\((.+?)\\\)|(?<![\w.,])(-?\d[\d,]*(?:\.\d+)?(?:/\d+)?))$",
    re.S,
)
# A sentence ends at `.`, `!`, `?` (also inside math or a parenthesis: `= 8.$ So`, `extraneous.) So`) or a line.
_SENTENCE_END_RE = re.compile(r"[.!?][$\"')\]]*(?:\s|$)|\n")
# A sentence that sets a value aside: a note, a counterfactual ("would ... if"), a rejected or failing value.
_COUNTERFACTUAL_RE = re.compile(r"\bwould\b[^.]*\bif\b|\bif\b[^.]*\bwould\b", re.I)
# "note that the final answer is \\boxed{7}" introduces the answer: a note that names the answer is no aside.
_ASIDE_BEFORE_RE = re.compile(
    r"\b(?:note\s+that|note:|aside|for\s+example|e\.g\.|compare)\b(?![^.]*\banswer\b)[^.]*$", re.I
)
_ASIDE_AFTER_RE = re.compile(
    r"^[\s$.,)]*(?:fails?\b|does\s*n[o']t\s+work|is\s+(?:rejected|extraneous|wrong|incorrect|invalid|not\s+the\s+answer)\b)",
    re.I,
)
# After the answer, the text doubts it between values ("The answer could be 5 or 6", "I am not sure").
_LATER_HEDGE_RE = re.compile(
    r"\b(?:the\s+answer|it)\s+(?:could|might|may)\s+(?:also\s+|instead\s+)?be\s*(?=\$|\\\(|-?\d)"
    r"|\b(?:the\s+answer|it)\s+(?:is|could\s+be|might\s+be)\s+either\b[^.]*\bor\b"
    r"|\bnot\s+(?:sure|certain)\b|\bunsure\b",
    re.I,
)
# "... is the answer we would get if we ignored overlaps, but ...": a conditional, not a commitment.
_CONDITION_AFTER_RE = re.compile(r"\b(?:if|but|however|unless|except|would|only)\b", re.I)
_DOUBT_RE = re.compile(
    r"\b(?:if|whether|suppose|assume|assuming|check|verify|test|not|think|guess|maybe|perhaps|could|might|"
    r"claim|unless)\b",
    re.I,
)


# Every phrase contains one of these words; the phrase regex only runs in windows around them (speed).
_ANCHORS = (
    "answer", "respuesta", "réponse", "reponse", "antwort", "risposta", "resposta", "antwoord", "ответ",
    "jawaban", "đáp án", "câu trả lời", "cevap", "yanıt", "yanit", "答案", "答え", "解答", "답", "उत्तर", "الإجابة",
    "option", "choice",
)  # fmt: skip


def _phrase_matches(text: str) -> list[re.Match[str]]:
    lower = text.lower()
    windows: list[tuple[int, int]] = []
    for anchor in _ANCHORS:
        i = lower.find(anchor)
        while i >= 0:
            windows.append((max(0, i - 40), min(len(text), i + len(anchor) + 30)))
            i = lower.find(anchor, i + 1)
    if not windows:
        return []
    windows.sort()
    merged = [windows[0]]
    for lo, hi in windows[1:]:
        if lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    # Only the latest commitments can win: look at the last windows only (bounded work on any input).
    return [m for lo, hi in merged[-MAX_PHRASE_WINDOWS:] for m in _PHRASE_RE.finditer(text, lo, hi)]


def _phrases(text: str) -> list[Candidate]:
    if not re.search(r"option|choice|answer", text, re.I):
        out: list[Candidate] = []
    else:
        out = [
            Candidate(m.start(), m.end(), f"({m.group(1) or m.group(2)})", "phrase")
            for m in _OPTION_CORRECT_RE.finditer(text)
        ]
    for m in _phrase_matches(text)[-MAX_PHRASE_WINDOWS:]:  # the latest commitments are the ones that count
        before = text[max(0, m.start() - 40) : m.start()]
        if _NOT_A_COMMITMENT_RE.search(before):
            continue
        span = _span_after(text, m.end())
        if span is None:
            continue
        answer, end = span
        if not answer.strip() or _JUDGEMENT_RE.match(answer.strip()):
            continue
        if _COUNTERFACTUAL_RE.search(_sentence_around(text, m.start(), m.start())):
            continue  # "the answer would be 12 if the order mattered"
        sentence = _SENTENCE_ANSWER_RE.match(answer.strip())
        if sentence:  # "Answer: The total is 5" -> "5"
            answer = sentence.group(1)
        # "the answer is the number of ways ... so that ..., which is 19": the description names the value
        which = _WHICH_IS_RE.search(_SENTENCE_END_RE.split(text[end : end + 300])[0])
        if which and len(re.findall(r"[A-Za-z]{2,}", answer)) >= 3:
            value = _span_after(text, end + which.end())
            if value is not None and value[0].strip():
                answer, end = value
        out.append(Candidate(m.start(), end, answer, "phrase"))
    return out


def _value_first_phrases(text: str) -> list[Candidate]:
    """The value stated right before "is the answer" ("So $5$ is the answer."), in a clause that commits to it."""
    if "answer" not in text.lower():
        return []
    out = []
    for m in _IS_THE_ANSWER_RE.finditer(text):
        before = text[max(0, m.start() - 300) : m.start()]
        value = _VALUE_BEFORE_RE.search(before)
        if value is None:
            continue
        start = m.start() - (len(before) - value.start())
        clause = _SENTENCE_END_RE.split(text[max(0, start - 120) : start])[-1]
        rest = _SENTENCE_END_RE.split(text[m.end() : m.end() + 200])[0]
        if _DOUBT_RE.search(clause) or _CONDITION_AFTER_RE.search(rest) or _BOX_RE.search(clause):
            continue  # a box earlier in the sentence is what "which is the answer" refers to
        inner = next(g for g in value.groups() if g is not None)
        out.append(Candidate(start, m.end(), inner, "phrase"))
    return out


def _is_hedge(fragment: str) -> bool:
    """A hedge about the answer; a weak modal inside a description ("the ways it could be done") is not one."""
    for m in _HEDGE_RE.finditer(fragment):
        if not (_WEAK_MODAL_RE.match(m.group(0)) and _DESCRIPTION_RE.search(fragment[: m.start()])):
            return True
    return False


def _sentence_around(text: str, start: int, end: int) -> str:
    """The sentence that holds text[start:end], without that span."""
    before = _SENTENCE_END_RE.split(text[max(0, start - 200) : start])[-1]
    after = _SENTENCE_END_RE.split(text[end : end + 200])[0]
    return f"{before} {after}"


def _unless_aside(text: str, box: Candidate, earlier: list[Candidate]) -> Candidate:
    """The last box, unless its sentence sets it aside ("Note that \\boxed{12} would be the answer if ...",
    "\\boxed{-6} is rejected") right after a plain box: then that box is the answer. A revision in between
    ("wait ...") keeps the last box."""
    if not earlier or not _is_aside(text, box):
        return box
    previous = earlier[-1]
    if _REVISION_RE.search(text[previous.end : box.start]) or _is_aside(text, previous):
        return box
    return previous


def _is_aside(text: str, box: Candidate) -> bool:
    """The box's own sentence sets it aside: "note that \\boxed{X}", "\\boxed{X} fails / is rejected / would ...",
    or a counterfactual ("would ... if")."""
    before = _SENTENCE_END_RE.split(text[max(0, box.start - 200) : box.start])[-1]
    after = _SENTENCE_END_RE.split(text[box.end : box.end + 200])[0]
    return bool(
        _ASIDE_BEFORE_RE.search(before)
        or _ASIDE_AFTER_RE.match(after)
        or _COUNTERFACTUAL_RE.search(f"{before} {after}")
    )


def _outputs(text: str) -> list[Candidate]:
    """Printed output of code: a fenced `output` block, or a plain fenced block right after a python block."""
    out = []
    prev_lang = ""
    prev_end = -1
    for m in _FENCE_RE.finditer(text):
        lang = m.group(1).lower()
        is_output = lang in ("output", "text", "stdout", "console") or (
            lang == ""
            and prev_lang in ("python", "py")
            and not re.sub(r"[\s:]|[Oo]utput", "", text[prev_end : m.start()])
        )
        prev_lang, prev_end = lang, m.end()
        if not is_output:
            continue
        lines = [ln.strip() for ln in m.group(2).strip().splitlines() if ln.strip()]
        if (
            lines
            and len(lines[-1]) <= 100
            and not re.match(r"(?:Traceback|File |\w*(?:Error|Exception)\b)", lines[-1])
        ):
            out.append(Candidate(m.start(), m.end(), lines[-1], "output"))
    return out


# What may stand between boxes that together are the answer: spacing, delimiters, punctuation, a connective,
# a part label `(b)` / `for part (ii):`, a short remark in words `(for part a)` and the name of the next value
# `y =`, `f(2) =`. A remark that sets the box aside ("(not ...)", "(check)", "fails") is not a join.
_GAP_SPACING_RE = re.compile(
    r"\\(?:quad|qquad|enspace|,|;|:| |hspace\*?\{[^{}]*\}|text\{\s*|mbox\{\s*|textrm\{\s*)|[{}$~*]|"
    r"\\[()\[\]]"
)
_PART_LABEL = (
    r"(?:part\s*)?(?:\(\s*(?:[a-h]|i{1,3}|iv|vi{0,3}|[1-9])\s*\)|(?:[a-h]|i{1,3}|iv|vi{0,3}|[1-9])\))"
)
_ASIDE_WORDS = r"not|check|checking|note|aside|wrong|incorrect|instead|rejected|extraneous|fails?|invalid|but"
_BOX_GAP_RE = re.compile(
    r"(?:[\s,;.:&]+|(?:and|or|for|in)\b|"
    + _PART_LABEL
    + r"|\((?![^()]*\b(?:"
    + _ASIDE_WORDS
    + r")\b)[^()\d$\\=]{1,40}\)"
    r"|[A-Za-z]\w{0,3}'?(?:\s*\([^()]{1,12}\))?\s*=)*",
    re.I,
)
# A part label that opens a line or a sentence ("**(b)** ...", "Part (ii):", "For part (b),").
_PART_START_RE = re.compile(
    r"(?:^|\n|[.!?]\s+)[\s#*_]*(?:for\s+)?(?:part\s*\(?\s*([a-h]|i{1,3}|iv|vi{0,3}|[1-9])\s*\)?|"
    r"\(\s*([a-h]|i{1,3}|iv|vi{0,3})\s*\)|([a-h])\))[*_]*[\s:.,]",
    re.I,
)
_SUMMARY_RE = re.compile(
    r"\b(?:total|altogether|in\s+all|overall|combin\w*|sum\s+of|adding|together|final\s+answer|in\s+summary)\b",
    re.I,
)
_PART_ORDER = ("a b c d e f g h", "i ii iii iv v vi vii viii", "1 2 3 4 5 6 7 8 9")


def _joined_by_conjunction(between: str) -> bool:
    """Whether the text between two boxes only joins them ("and", `\\quad`, a comma, a label `y =`); the unit of
    the first value may come first (`\\boxed{12}\\text{ cm and }\\boxed{15}`)."""
    if len(between) > 120:
        return False
    gap = _GAP_SPACING_RE.sub(" ", between)
    unit = re.match(r"\s*([A-Za-z]+)(?:\^\d)?", gap)
    if unit and (
        unit_info(unit[1]) is not None or unit[1].lower() in ("units", "unit", "degrees", "square", "cubic")
    ):
        gap = gap[unit.end() :]
    return _BOX_GAP_RE.fullmatch(gap) is not None


def _part_rank(label: str) -> tuple[int, int] | None:
    for series, names in enumerate(_PART_ORDER):
        parts = names.split()
        if label.lower() in parts:
            return series, parts.index(label.lower())
    return None


def _labelled_parts(text: str, boxes: list[Candidate]) -> list[Candidate] | None:
    """The last box of each labelled part "(a) ... \\boxed{5} (b) ... \\boxed{7}", when parts a, b, ... are all boxed."""
    owner: dict[tuple[int, int], Candidate] = {}
    current = None
    prev_end = 0
    for box in boxes:
        labels = [
            next(g for g in m.groups() if g) for m in _PART_START_RE.finditer(text, prev_end, box.start)
        ]
        ranks = [r for r in map(_part_rank, labels) if r is not None]
        if ranks:
            current = ranks[-1]
        if current is not None:
            owner[current] = box  # a later box in the same part revises it
        prev_end = box.end
    ranks = sorted(owner)
    if _SUMMARY_RE.search(text[boxes[-2].end if len(boxes) > 1 else 0 : boxes[-1].start]):
        return None  # "(i) ... (ii) ... so the total is \\boxed{8}": the last box sums the parts up
    if len(ranks) < 2 or len({r[0] for r in ranks}) != 1 or [r[1] for r in ranks] != list(range(len(ranks))):
        return None
    if owner[ranks[-1]] is not boxes[-1]:
        return None
    return [owner[r] for r in ranks]


def _merge_final_boxes(text: str, boxes: list[Candidate]) -> str | None:
    """Boxes that together are the answer -> one list; `\\boxed{3} or \\boxed{4}` is a hedge -> None.

    Together: boxes joined only by a conjunction (`\\boxed{3} \\quad\\text{and}\\quad \\boxed{5}`), or the last
    boxes of labelled parts (a), (b), ... of one question. Any other text between boxes (an aside, a revision)
    leaves the last box alone as the answer.
    """
    group = [boxes[-1]]
    for prev in reversed(boxes[:-1]):
        if not _joined_by_conjunction(text[prev.end : group[0].start]):
            break
        group.insert(0, prev)
    if len(group) == 1:
        parts = _labelled_parts(text, boxes)
        if parts is None:
            return group[0].text
        group = parts
        joins = [""]
    else:
        joins = [text[a.end : b.start] for a, b in zip(group, group[1:], strict=False)]
    if any(re.search(r"\bor\b", j) for j in joins) and not all(re.search(r"=", j) for j in joins):
        # "\boxed{15\frac{39}{40}} or \boxed{\frac{639}{40}}" restates one value; different values are a hedge
        return group[-1].text if _all_equal([b.text for b in group]) else None
    values = [b.text.strip() for b in group]
    if len(set(values)) == 1:
        return values[0]
    return ", ".join(values)


def _all_equal(values: list[str]) -> bool:
    """Whether several boxed values are one number written differently (exact check, no sympy)."""
    from .compare import scalar_verdict
    from .parse import ParseError, parse_answer

    try:
        trees = [parse_answer(v) for v in values]
    except (ParseError, RecursionError):
        return False
    return all(scalar_verdict(t, trees[0])[0] is True for t in trees[1:])


def _clean(answer: str) -> str | None:
    s = answer.strip()
    s = re.sub(r"^[*_\s]+|[*_\s]+$", "", s)
    s = _FOOTNOTE_RE.sub("", s).strip()
    s = re.sub(
        r"^(?:approximately|approx\.?|about|around|roughly|exactly|≈|\\approx|is|therefore|thus|hence|simply|"
        r"just|clearly|indeed),?\s+",
        "",
        s,
        flags=re.I,
    )
    s = re.sub(r"^[:=：]\s*", "", s)
    s = s.strip()
    if s.endswith(".") and not s.endswith("..."):
        s = s[:-1].rstrip()
    s = s.strip("*_ ").strip()
    if s.startswith("$") and s.endswith("$") and len(s) > 1:
        s = s.strip("$").strip()
    elif s.startswith("$") and s.count("$") == 1:  # a currency sign: "$12"
        s = s[1:].strip()
    if not s or len(s) > MAX_ANSWER_CHARS:
        return None
    return s


def _looks_truncated(tail: str) -> bool:
    """After the last answer the text starts revising and stops mid-way (no closing punctuation)."""
    stripped = tail.rstrip()
    if not stripped:
        return False
    if not _REVISION_RE.search(tail):
        return False
    return not re.search(r"(?:[.!?)\]}$]|```|\\\]|\\\))\s*$", stripped)


def extract_answer(text: str) -> str | None:
    """The final answer committed to in a model output, or None (no answer, hedge, truncated output)."""
    if not isinstance(text, str):
        raise TypeError(f"extract_answer expects str, got {type(text).__name__}")
    if not text.strip():
        return None
    boxes, unclosed = _boxes(text)
    cands: list[Candidate] = list(boxes)
    cands += [Candidate(m.start(), m.end(), m.group(1), "hashes") for m in _HASHES_RE.finditer(text)]
    cands += [Candidate(m.start(1), m.end(), m.group(1), "phrase") for m in _MINERVA_RE.finditer(text)]
    cands += _phrases(text)
    cands += _value_first_phrases(text)
    if not cands:
        outputs = _outputs(text)
        if not outputs or unclosed is not None:
            return None
        last = outputs[-1]
        if _looks_truncated(text[last.end :]):
            return None
        return _clean(last.text)
    if boxes:  # words after the final box ("the answer is reasonable") do not replace it
        last_box = boxes[-1]
        cands = [
            c for c in cands if c.kind == "box" or c.start < last_box.start or re.search(r"[\d\\^=]", c.text)
        ]
    # The latest commitment wins; a box and the phrase that introduces it end together, prefer the box.
    best = max(cands, key=lambda c: (c.end, c.kind == "box", c.start))
    inner_boxes = [b for b in boxes if b.start >= best.start and b.end <= best.end]
    if best.kind != "box" and inner_boxes:
        best = inner_boxes[-1]
    if best.kind == "box":
        best = _unless_aside(text, best, [b for b in boxes if b.end <= best.start])
    if unclosed is not None and unclosed > best.start:
        return None
    tail = text[best.end :]
    if _looks_truncated(tail):
        return None
    if best.kind == "box":
        merged = _merge_final_boxes(text, [b for b in boxes if b.end <= best.end])
        if merged is None:
            return None
        answer = merged
    else:
        answer = best.text
        stripped = answer.strip().strip("$").strip()
        if _VALUE_OR_VALUE_RE.match(stripped) and not re.search(r"=", stripped):
            return None  # "the answer is 12 or 13"
    context = text[max(0, best.start - 60) : min(len(text), best.end + 60)]
    sentence_after = re.split(r"(?<=[.!?])\s|\n", text[best.end : best.end + 120], maxsplit=1)[0]
    hedged = (
        _is_hedge(sentence_after)
        or best.kind != "box"
        and _is_hedge(best.text)
        or _STRONG_HEDGE_RE.search(text[best.end : best.end + 50])
    )
    if hedged or re.search(r"answer\s+is\s+either\b", context, re.I) or _LATER_HEDGE_RE.search(tail[:600]):
        return None
    return _clean(answer)
