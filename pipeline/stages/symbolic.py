"""GSM-Symbolic-style variants of GSM8K problems, templated from GSM8K's own ``<<a*b=c>>`` annotations.

Why this works without an LLM: GSM8K solutions carry a calculator trace. We lift the question's numbers to
variables, link every operand of every annotated step to exactly one source (a question number, a percentage or
its complement, an earlier step's result, or a constant), then resample the variables and recompute the whole
chain in exact rational arithmetic.

The answer is only as right as the links, so a link is made only when it is certain. An operand whose value
matches more than one source is ambiguous and the problem is rejected with a counted reason, never guessed:
several earlier steps of that value (``6+6`` from two different steps), a number word or a value a word implies
("four times", "a week" = 7, "the twelfth month", "Monday, Wednesday and Friday" = 3, "5ml") next to a question
number or step result, two equal numbers in the question (each occurrence is its own quantity), a percentage next
to its complement, a result the solution wrote in prose outside the annotations ("100% - 40% = 60%"), or an
unstated 1 or 2 next to a question number or step ("to work and back": 2*2). Also rejected: an unstated constant
above 2, a question number the chain never reads (it may be tied to the ones it does: "3 groups ... 2 of them"),
a question number twice in one step. A wrong label in training data costs more than a missing row; the figures
and an independent audit against hand-labelled GSM8K test problems are in bench/RESULTS.md.

Constraints on a draw (rejection sampling), so the story stays sensible: each number stays within
``relative_range`` of its original value (default ±50%) with the same decimals and roundness, never becomes 0 or
1; integers stay integers, every step whose original result was an integer must stay one (no remainder the story
forbids), every step keeps its sign and stays below one when it was; numbers of the same noun, unit or currency
keep their order ("22 men stayed" of "25 men"); a question number that is the sum or product of two others stays
so ("8 men ... 6 women ... all 14"); natural bounds hold (hours in a day, minutes in an hour, days in a week or a
month, months in a year, ages up to 100, percentages, elevation angles) for question numbers and for step results
the solution labels so. Articles are fixed after substitution ("an 8 hour day" → "a 6 hour day").
"""

from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.records import derive
from pipeline.stages import StageContext

NAME = "symbolic"
# 2: links only certain operands, equal question numbers stay separate, relative ranges and natural bounds
VERSION = "2"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variants_per_seed: int = Field(3, ge=1, le=100)
    max_draws: int = Field(300, ge=1, description="rejection-sampling draws per seed before giving up")
    max_growth: float = Field(50.0, gt=1, description="reject draws where a step result grows more than this ×")
    relative_range: float = Field(
        0.5, gt=0, lt=1, description="a drawn number stays within ± this share of its original (0.5: 40 → 20..60)"
    )


# ------------------------------------------------------------------------------------------------ number tokens

# a number in prose: 1,234.5 | 12.5 | 12 | .5 ; not part of a word, a time (3:30) or a version string
NUM = re.compile(r"(?<![\w.,:/])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+|\.\d+)(?![\w:]|\.\d|,\d{3}|/\d)")
# the same in a solution's prose, where "48/2 = 24" is arithmetic, not a written fraction
NUM_PROSE = re.compile(r"(?<![\w.,:])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+|\.\d+)(?![\w:]|\.\d|,\d{3})")
ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
FINAL = re.compile(r"^####\s*(.+?)\s*$", re.M)
# a result written in the solution's prose without an annotation ("100% - 40% = 60%", "600ml - 500ml = 100ml"): a
# source the chain may use that no annotation records (annotations are masked with § first, so "48/2 = <<..>>"
# is not one)
_P_NUM = r"(?:\d[\d,]*(?:\.\d+)?|\.\d+)"
PROSE_ARITHMETIC = re.compile(rf"=\s*\$?({_P_NUM})(?![\d§])")
# "between the 3 of them", "all 4 of us": a count of people the story names, not a quantity to vary
COUNT_OF_NAMED = re.compile(r"(?<=\b(?:the|all)\s)(\d+)(?=\s+of\s+(?:them|us|you)\b)", re.I)

NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "hundred": 100, "thousand": 1000, "dozen": 12, "half": 2, "twice": 2, "double": 2,
    "triple": 3, "thrice": 3, "quarter": 4, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "tenth": 10,
    "once": 1, "score": 20, "pair": 2, "pairs": 2, "couple": 2, "dozens": 12,
}
# values a word in the question implies (a week has 7 days, "every other" halves): an operand equal to one of
# these could be that constant rather than a question number or a step result, so such an operand is ambiguous
IMPLIED_BY_WORD = {
    r"weeks?": (7,), r"days?": (7, 24), r"hours?": (24, 60), r"minutes?|mins?": (60,), r"seconds?|secs?": (60,),
    r"dozens?": (12,), r"feet|foot": (12, 3), r"inch(es)?": (12,), r"yards?": (3, 36), r"years?": (12, 52, 365),
    r"months?": (4, 12, 30, 31), r"percent|%": (100,), r"cents?|pennies|penny": (100,), r"dimes?": (10,),
    r"nickels?": (5,), r"quarters?": (4, 25),
    r"every other|half|halve[sd]?|halving|twice|double[sd]?|pairs?|couple|both": (2,),
    r"triple|thrice|third": (3,), r"gallons?": (4,), r"quarts?": (2, 4), r"pounds?|ounces?": (16,),
    r"centur(y|ies)": (100,), r"decades?": (10,), r"meters?|metres?": (100, 1000), r"km|kilo\w*|grams?": (1000,),
    r"liters?|litres?|ml|milliliters?": (1000,), r"hundred": (100,), r"thousand": (1000,),
    r"weekdays?|work ?days?|school ?days?": (5,), r"weekends?": (2,),
}
# a stated unit definition ("1 foot is 12 inches", "60 minutes in an hour") is a constant, never a variable
DEFINITION = re.compile(
    r"\b1\s+[a-z]+\s+(?:is|=|equals|is equal to|has|contains|makes)\s+(\d[\d,.]*)"
    r"|\b(\d[\d,.]*)\s+[a-z]+\s+(?:in|per|make|makes)\s+(?:a|an|one|1)\s+[a-z]+",
    re.I,
)
# a calendar year ("in 2019") is a date, not a quantity: it stays as written
YEAR = re.compile(r"(?:\b(?:in|since|year|until|by|from|of|to|between|before|after|born|[A-Z][a-z]+)\s+)$")
# constants a solution may use without the question spelling them out (unit conversions, calendar, percent)
UNIT_CONSTANTS = {Fraction(v) for v in (24, 30, 31, 36, 48, 52, 60, 100, 1000, 360, 365, 366, 3600, 1440)}
UNIT_CONSTANTS |= {Fraction(1, 2), Fraction(1, 4), Fraction(3, 4), Fraction(1, 10), Fraction(1, 100)}
# the only constants a solution may use that neither the question's words nor a unit conversion explain: one
# ("4+1 people including Sarah"); 2 when nothing else offers it
HIDDEN_CONSTANTS_ALLOWED = {Fraction(1), Fraction(2)}

# natural bounds: (unit after the number, a word the same sentence must contain, the largest sensible value)
NATURAL_BOUNDS = (
    (r"hours?|hrs?", r"day|daily|shift|night|workday", 24),
    (r"minutes?|mins?", r"hour", 60),
    (r"seconds?|secs?", r"minute", 60),
    (r"days?", r"week", 7),
    (r"months?", r"year", 12),
    (r"days?", r"february", 29),
    (r"days?", r"month", 31),
    (r"degrees?", r"ground|angle|horizon|incline|slope", 90),
)
# "for 11 months ... on the twelfth month": an ordinal after "the" ties the number before it, so both its value
# and the one below it are values the question fixes
ORDINAL = re.compile(
    r"\bthe\s+(?:(\d+)(?:st|nd|rd|th)|(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|"
    r"twelfth))\b",
    re.I,
)
ORDINAL_WORDS = {
    w: i + 1
    for i, w in enumerate(
        "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split()
    )
}
AGE_AFTER = re.compile(r"^[\s-]*years?[\s-]*old\b|^[\s-]*year-old")
AGE_BEFORE = re.compile(r"\b(?:age|aged|ages)\s+(?:of\s+)?$", re.I)
MAX_AGE = 100
# words after a number that name no quantity, so they say nothing about which numbers may be compared; units
# ("20 feet on the long side, 15 feet on the short side") do, and money amounts all compare with each other
NOT_A_NOUN = {
    "a", "an", "the", "per", "each", "every", "of", "and", "or", "more", "less", "fewer", "times", "to", "in",
    "for", "from", "at", "on", "is", "are", "was", "were", "than", "as", "with", "by", "percent", "other",
    "total", "time",
}
MONEY = "$"
# a list of named days or months ("on Monday, Wednesday and Friday") counts them: the count is a value the
# question fixes, and a question number equal to it is ambiguous
_DAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|february|march|april|may|june|july|" \
    r"august|september|october|november|december)s?"
NAMED_LIST = re.compile(rf"\b{_DAY}(?:\s*(?:,|,?\s+and|,?\s+or)\s+{_DAY})+\b", re.I)


def parse_number(text: str) -> Fraction:
    return Fraction(text.replace(",", ""))


def decimals_of(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def is_terminating(value: Fraction) -> bool:
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def format_number(value: Fraction, like: str | None = None, max_decimals: int = 4) -> str | None:
    """Exact decimal text of ``value`` in the style of ``like`` (commas, leading dot); None if not exact."""
    if not is_terminating(value):
        return None
    places = decimals_of(like) if like else 0
    while value * 10**places != int(value * 10**places):
        places += 1
        if places > max_decimals:
            return None
    if places == 0:
        text = str(int(value))
        if like and "," in like:
            text = f"{int(value):,}"
        return text
    scaled = abs(value) * 10**places
    whole, frac = divmod(int(scaled), 10**places)
    whole_text = f"{whole:,}" if like and "," in like else str(whole)
    if like and like.startswith(".") and whole == 0:
        whole_text = ""
    sign = "-" if value < 0 else ""
    return f"{sign}{whole_text}.{frac:0{places}d}"


# --------------------------------------------------------------------------------------- safe exact arithmetic

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@dataclass(frozen=True)
class Literal:
    start: int
    end: int
    text: str
    value: Fraction


@lru_cache(maxsize=65536)
def _literals(expr: str) -> tuple[Literal, ...]:
    return tuple(
        Literal(m.start(), m.end(), m.group(0), parse_number(m.group(0)))
        for m in re.finditer(r"\d+(?:\.\d+)?|\.\d+", expr.replace(",", "\x00"))
    )


def expr_literals(expr: str) -> list[Literal]:
    return list(_literals(expr))


@lru_cache(maxsize=65536)
def _compiled(expr: str) -> tuple[int, ast.Expression]:
    """The expression's AST with its i-th literal replaced by the name ``_v{i}`` (parsed once, drawn often)."""
    literals = _literals(expr)
    src, offset = expr, 0
    for i, lit in enumerate(literals):
        name = f"_v{i}"
        src = src[: lit.start + offset] + name + src[lit.end + offset :]
        offset += len(name) - (lit.end - lit.start)
    src = src.replace("x", "*").replace("×", "*").replace("÷", "/")
    return len(literals), ast.parse(src.strip(), mode="eval")


def evaluate(expr: str, values: list[Fraction]) -> Fraction:
    """Evaluate ``expr`` exactly, its i-th number literal replaced by ``values[i]``."""
    count, tree = _compiled(expr)
    if count != len(values):
        raise ValueError("literal count mismatch")

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            right = ev(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise ZeroDivisionError
            return _OPS[type(node.op)](ev(node.left), right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Name) and node.id.startswith("_v"):
            return values[int(node.id[2:])]
        raise ValueError(f"unsupported expression element {ast.dump(node)[:40]}")

    return ev(tree)


# ----------------------------------------------------------------------------------------------- the template


class TemplateError(ValueError):
    """A seed that cannot be templated; ``reason`` is the funnel key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Variable:
    """One number as written in the question: every occurrence is its own quantity, even when values repeat."""

    value: Fraction
    text: str
    start: int
    end: int
    percent: bool = False
    decimals: int = 0
    cap: Fraction | None = None  # natural upper bound (hours in a day, an age), None when the story sets none
    noun: str | None = None  # the word after the number ("men"), for keeping the order of like quantities
    used: bool = False
    choices: tuple[Fraction, ...] = ()

    @property
    def tokens(self) -> list[str]:
        return [self.text] if self.used else []


@dataclass
class Step:
    expr: str
    result_text: str
    result: Fraction
    # per operand literal: ("var", i) | ("pct", i) = value/100 | ("cpl", i) = 100 - value
    # | ("cplf", i) = (100 - value)/100 | ("step", j) | ("const", value)
    refs: list[tuple[str, Any]] = field(default_factory=list)
    cap: Fraction | None = None  # natural bound of the result when the solution labels it (an age, hours a day)
    noun: str | None = None  # what the result counts, from the solution's words after it ("8 were women")


def _operand(kind: str, ref: Any, values: list[Fraction], results: list[Fraction]) -> Fraction:
    if kind == "var":
        return values[ref]
    if kind == "pct":
        return values[ref] / 100
    if kind == "cpl":
        return 100 - values[ref]
    if kind == "cplf":
        return (100 - values[ref]) / 100
    if kind == "step":
        return results[ref]
    return ref


def operand_value(kind: str, ref: Any, values: list[Any], results: list[Any]) -> Any:
    """One operand's value by its link, for callers that recompute a chain with other values (``fobar`` puts a
    sympy symbol in place of one question number)."""
    return _operand(kind, ref, values, results)


@dataclass
class Template:
    question: str
    solution: str
    variables: list[Variable]
    steps: list[Step]
    constants: set[Fraction]
    # (a, b): quantity a stays below quantity b, each ("var", i) or ("step", j); like nouns keep their order
    orders: list[tuple[tuple[str, int], tuple[str, int]]] = field(default_factory=list)
    # (c, op, a, b): question number c is a + b or a * b of two others ("8 men ... 6 women ... all 14"); c is
    # derived from a and b in every draw, so the story's own arithmetic still holds
    relations: list[tuple[int, str, int, int]] = field(default_factory=list)

    @property
    def spans(self) -> list[tuple[int, int, int]]:
        """(start, end, variable index) of the question numbers a draw rewrites."""
        return [(v.start, v.end, i) for i, v in enumerate(self.variables) if v.used]

    def recompute(self, values: list[Fraction]) -> list[Fraction]:
        results: list[Fraction] = []
        for step in self.steps:
            operands = [_operand(kind, ref, values, results) for kind, ref in step.refs]
            results.append(evaluate(step.expr, operands))
        return results

    def answer(self, values: list[Fraction], results: list[Fraction]) -> Fraction:
        return results[-1]


def _sentence(text: str, pos: int) -> str:
    """The sentence of ``text`` around ``pos`` (decimal points do not end a sentence)."""
    ends = [m.end() for m in re.finditer(r"[.?!](?=\s|$)", text)]
    start = max((e for e in ends if e <= pos), default=0)
    end = min((e for e in ends if e > pos), default=len(text))
    return text[start:end]


def natural_cap(text: str, start: int, end: int) -> Fraction | None:
    """The largest sensible value of the number at ``text[start:end]``, from its unit and sentence; or None."""
    after = text[end : end + 30].lower()
    if AGE_AFTER.match(after) or AGE_BEFORE.search(text[max(0, start - 12) : start]):
        return Fraction(MAX_AGE)
    if after.startswith("%") or after.startswith(" percent"):
        return Fraction(100)
    sentence = _sentence(text, start).lower()
    for unit, context, cap in NATURAL_BOUNDS:
        if re.match(rf"[\s-]*(?:{unit})\b", after) and re.search(rf"\b(?:{context})\b", sentence):
            return Fraction(cap)
    return None


def _noun_after(text: str, end: int, skip_verbs: bool = False) -> str | None:
    """The noun right after a number ("25 men" → "men"); with ``skip_verbs`` also "8 were women" → "women"."""
    verbs = r"(?:(?:were|are|is|was|of|the|them|which)\s+)*" if skip_verbs else ""
    m = re.match(rf"[\s-]*{verbs}([a-z]+)", text[end : end + 40].lower())
    if not m or m.group(1) in NOT_A_NOUN:
        return None
    return m.group(1).removesuffix("s")


def _question_numbers(question: str) -> tuple[list[Variable], dict[Fraction, str]]:
    """The question's numbers, one variable per occurrence; and the values its words state or imply."""
    variables: list[Variable] = []
    stated: dict[Fraction, str] = {}
    for w, v in NUMBER_WORDS.items():
        if re.search(rf"\b{w}\b", question, re.I):
            stated.setdefault(Fraction(v), w)
    for pattern, implied in IMPLIED_BY_WORD.items():
        if m := re.search(rf"(?<![a-z])(?:{pattern})(?![a-z])", question, re.I):
            for v in implied:
                stated.setdefault(Fraction(v), m.group(0))
    for m in DEFINITION.finditer(question):
        stated.setdefault(parse_number(m.group(1) or m.group(2)), "definition")
    for m in NAMED_LIST.finditer(question):
        count = len(re.findall(_DAY, m.group(0), re.I))
        stated.setdefault(Fraction(count), m.group(0))
    for m in ORDINAL.finditer(question):
        nth = int(m.group(1)) if m.group(1) else ORDINAL_WORDS[m.group(2).lower()]
        for v in (nth, nth - 1):
            stated.setdefault(Fraction(v), m.group(0))
    # numbers we never touch: times like 3:30, fractions written 1/2, numbers glued to a unit ("5ml"), counts
    # of named people ("the 3 of them")
    for m in re.finditer(r"\d+(?=[:/]\d)|(?<=[:/])\d+", question):
        stated.setdefault(Fraction(int(m.group(0))), "written fraction or time")
    for m in re.finditer(r"(?<![\d.,])(\d+(?:\.\d+)?)(?=[a-zA-Z])", question):
        stated.setdefault(parse_number(m.group(1)), "number glued to a word")
    counted = {m.start() for m in COUNT_OF_NAMED.finditer(question)}
    for m in COUNT_OF_NAMED.finditer(question):
        stated.setdefault(parse_number(m.group(1)), "count of named people")
    for m in NUM.finditer(question):
        text = m.group(0)
        value = parse_number(text)
        before = question[: m.start()]
        if m.start() in counted:
            continue
        if re.fullmatch(r"1[89]\d\d|20\d\d", text) and not before.endswith("$") and YEAR.search(before[-12:]):
            stated.setdefault(value, "calendar year")
            continue
        after = question[m.end() : m.end() + 8].lower()
        percent = after.startswith("%") or after.startswith(" percent")
        if value in (0, 1) and not percent and "." not in text:
            stated.setdefault(value, "structural 0 or 1")  # "1 box" never changes, so it is a constant
            continue
        variables.append(
            Variable(
                value, text, m.start(), m.end(), percent, decimals_of(text),
                cap=natural_cap(question, m.start(), m.end()),
                noun=None if percent else MONEY if before.endswith("$") else _noun_after(question.lower(), m.end()),
            )
        )
    return variables, stated


def _candidates(
    value: Fraction, variables: list[Variable], steps: list[Step], stated: dict[Fraction, str], prose: set[Fraction]
) -> list[tuple[str, Any]]:
    """Every source an operand of this value could have come from."""
    found: list[tuple[str, Any]] = [("step", j) for j, s in enumerate(steps) if s.result == value]
    for i, var in enumerate(variables):
        if var.value == value:
            found.append(("var", i))
        if var.percent:
            if var.value / 100 == value:
                found.append(("pct", i))
            if 100 - var.value == value:
                found.append(("cpl", i))
            if (100 - var.value) / 100 == value:
                found.append(("cplf", i))
    if value in stated:
        found.append(("const", value))
    if value in HIDDEN_CONSTANTS_ALLOWED and value not in stated and found:
        # "bikes 2 hours to work ... to work and back: 2*2", "split with his friend: 34/2" after a $2 tax step: an
        # unstated 2 hides behind a question number or a step result of the same value
        found.append(("hidden", value))
    complement = any(kind in ("cpl", "cplf") for kind, _ in found)
    if value in prose and not complement:  # "100% - 40% = 60%" is the complement the chain already knows
        found.append(("prose", value))
    return found


def _ambiguity_reason(found: list[tuple[str, Any]]) -> str:
    kinds = [kind for kind, _ in found]
    if kinds.count("var") > 1:
        return "ambiguous_equal_question_numbers"
    if "const" in kinds:
        return "ambiguous_number_word_or_unit"
    if "cpl" in kinds or "cplf" in kinds:
        return "ambiguous_percent_complement"
    if "prose" in kinds:
        return "ambiguous_prose_arithmetic"
    if kinds.count("step") > 1:
        return "ambiguous_equal_step_results"
    if "hidden" in kinds:
        return "ambiguous_unstated_constant"
    return "ambiguous_operand"


def build_template(question: str, solution: str) -> Template:
    """Link the annotated chain to the question's numbers; raise ``TemplateError`` when a link is not certain."""
    annotations = list(ANNOTATION.finditer(solution))
    if not annotations:
        raise TemplateError("no_annotations")
    final = FINAL.search(solution)
    if not final:
        raise TemplateError("no_final_answer")
    try:
        gold = parse_number(final.group(1).replace("$", "").strip())
    except (ValueError, ZeroDivisionError):
        raise TemplateError("unreadable_final_answer") from None

    variables, stated = _question_numbers(question)
    if not variables:
        raise TemplateError("no_question_numbers")
    masked = ANNOTATION.sub("§", solution)
    prose = {parse_number(m.group(1)) for m in PROSE_ARITHMETIC.finditer(masked)}

    steps: list[Step] = []
    constants: set[Fraction] = set()
    for ann in annotations:
        expr, result_text = ann.group(1), ann.group(2).strip()
        if re.search(r"[^\d\s.+\-*/()x×÷,]", expr) or not expr.strip():
            raise TemplateError("unsupported_expression")
        try:
            result = parse_number(result_text.replace("$", ""))
            literals = expr_literals(expr)
            if evaluate(expr, [lit.value for lit in literals]) != result:
                raise TemplateError("chain_does_not_recompute")
        except TemplateError:
            raise
        except (ValueError, ZeroDivisionError, SyntaxError):
            raise TemplateError("unparseable_annotation") from None
        step = Step(expr, result_text, result)
        for lit in literals:
            found = _candidates(lit.value, variables, steps, stated, prose)
            if len(found) > 1:
                raise TemplateError(_ambiguity_reason(found))
            if not found:
                # a constant nothing in the question states is a guess (the "5" of "Jeff gets 4 times as much as
                # Brad: 100/5", the "3 halvings" of "halved every 10 years"), unless it converts units or counts one
                if not (lit.value in UNIT_CONSTANTS or lit.value in HIDDEN_CONSTANTS_ALLOWED):
                    raise TemplateError("unexplained_constant")
                found = [("const", lit.value)]
            kind, ref = found[0]
            if kind == "prose":
                raise TemplateError("prose_arithmetic_operand")
            if kind == "const":
                constants.add(ref)
            elif kind != "step":
                variables[ref].used = True
            if kind == "var" and (kind, ref) in step.refs:
                # "3*3" for "3 miles on Monday, Wednesday and Friday": a number times itself is mostly a count
                # the solver read elsewhere in the story, which happens to equal it
                raise TemplateError("question_number_twice_in_one_step")
            step.refs.append((kind, ref))
        # the result's natural bound, when the solution's words after it say what it is ("90 years old")
        number = re.match(r"\s*\$?[\d,.]*\d", solution[ann.end() :])
        if number:
            step.cap = natural_cap(solution, ann.end(), ann.end() + number.end())
            if step.cap is not None and result > step.cap:
                step.cap = None
            step.noun = _noun_after(solution, ann.end() + number.end(), skip_verbs=True)
        steps.append(step)

    # the answer must be the last computed value: an answer that equals an earlier step is either a coincidence
    # or picked by a comparison ("the faster route"), and a new draw can flip the comparison
    if steps[-1].result != gold:
        raise TemplateError("answer_not_last_step")
    if re.search(r"[<>≤≥]", masked):
        raise TemplateError("comparison_in_solution")
    if not any(v.used for v in variables):
        raise TemplateError("no_variables_in_chain")
    # a question number the chain never reads may still be tied to the ones it does ("3 groups ... 2 of them
    # ... the last one", "3 apartment complexes ... the first two"): a draw would contradict it silently
    if any(not v.used and v.value not in (0, 1) for v in variables):
        raise TemplateError("unused_question_number")
    if any(v.used and v.value in constants for v in variables):
        raise TemplateError("variable_equals_constant")
    asked = re.search(r"\bhow many ([a-z]+)", question, re.I)
    if asked and not steps[-1].noun and asked.group(1).lower() not in NOT_A_NOUN:
        steps[-1].noun = asked.group(1).lower().removesuffix("s")
    quantities = [(("var", i), v.noun, v.value) for i, v in enumerate(variables)]
    quantities += [(("step", j), s.noun, s.result) for j, s in enumerate(steps)]
    orders = [
        (a, b)
        for a, noun_a, value_a in quantities
        for b, noun_b, value_b in quantities
        if noun_a and noun_a == noun_b and value_a < value_b and not (a[0] == b[0] == "step")
    ]
    return Template(question, solution, variables, steps, constants, orders, _relations(variables))


def _relations(variables: list[Variable]) -> list[tuple[int, str, int, int]]:
    """Question numbers that are the sum or product of two others. Kept even when the relation is a coincidence:
    that costs variety, never correctness."""
    found = []
    plain = [i for i, v in enumerate(variables) if not v.percent and v.value >= 2]
    for c in plain:
        for a in plain:
            for b in plain:
                if len({a, b, c}) < 3 or a > b:
                    continue
                va, vb, vc = variables[a].value, variables[b].value, variables[c].value
                if vc == va + vb:
                    found.append((c, "+", a, b))
                elif vc == va * vb:
                    found.append((c, "*", a, b))
    percents = [i for i, v in enumerate(variables) if v.percent]
    for a in percents:  # "40% are boys and 60% girls": the shares still add up to 100%
        for b in percents:
            if a < b and variables[a].value + variables[b].value == 100:
                found.append((b, "100-", a, a))
    return found


# ----------------------------------------------------------------------------------------------------- sampling


def value_choices(var: Variable, spread: float) -> tuple[Fraction, ...]:
    """The values a draw may give ``var``: within ± ``spread`` of the original, same decimals and roundness.

    Roundness: a multiple of the original's power of ten (300 → 150, 200, ..., 450), relaxed to 5× or 1× a
    smaller power when fewer than three values would fit. 0 and 1 are structural ("1 box") and never move; a
    number of at least 2 never becomes 1 (the story's plurals would break). Natural bounds cap the range.
    """
    scale = 10**var.decimals
    units = var.value * scale
    if units.denominator != 1 or units <= 1 and var.decimals == 0:
        return (var.value,)
    units = int(units)
    low = math.ceil(units * (1 - spread))
    high = math.floor(units * (1 + spread))
    low = max(low, 2 if var.decimals == 0 else 1)
    if var.percent:
        high = min(high, 99)
    if var.cap is not None and var.value <= var.cap:
        high = min(high, math.floor(var.cap * scale))
    digits = str(units)
    zeros = min(len(digits) - len(digits.rstrip("0")), len(digits) - 1)
    steps = [5] if zeros == 0 else []  # 75 → 40, 45, ..., 110 before 38, 39, ...
    for z in range(zeros, -1, -1):
        steps += [10**z, 5 * 10 ** (z - 1)] if z else [1]
    steps = [s for s in steps if units % s == 0]
    for step in steps:
        options = range(math.ceil(low / step) * step, high + 1, step)
        if len(options) >= 3 or step == steps[-1]:
            return tuple(Fraction(k, scale) for k in options) or (var.value,)
    return (var.value,)


def _draw_ok(template: Template, values: list[Fraction], results: list[Fraction], growth: float) -> bool:
    for (kind_a, a), (kind_b, b) in template.orders:
        low = values[a] if kind_a == "var" else results[a]
        high = values[b] if kind_b == "var" else results[b]
        if not low < high:
            return False
    for step, new in zip(template.steps, results):
        old = step.result
        if old.denominator == 1 and new.denominator != 1:
            return False
        if (old > 0 and new <= 0) or (old >= 0 and new < 0) or (old < 0 and new >= 0):
            return False
        if 0 < old < 1 and not new < 1:
            return False
        if step.cap is not None and new > step.cap:
            return False
        if format_number(new, like=step.result_text) is None:
            return False
        if abs(new) > growth * max(abs(old), 1):
            return False
    return True


def _apply_relations(template: Template, values: list[Fraction]) -> bool:
    """Set each related number from its parts; False if it leaves its own range or a relation no longer holds."""
    for c, op, a, b in template.relations:
        var = template.variables[c]
        new = values[a] + values[b] if op == "+" else values[a] * values[b] if op == "*" else 100 - values[a]
        if not var.used or not min(var.choices) <= new <= max(var.choices) or new.denominator != 1:
            if new != values[c]:
                return False
        values[c] = new
    return all(
        values[c] == (values[a] + values[b] if op == "+" else values[a] * values[b] if op == "*" else 100 - values[a])
        for c, op, a, b in template.relations
    )


def draw_variant(template: Template, rng: Any, params: Params) -> tuple[list[Fraction], list[Fraction]] | None:
    for var in template.variables:
        if var.used and not var.choices:
            var.choices = value_choices(var, params.relative_range)
    used = [i for i, v in enumerate(template.variables) if v.used]
    if all(len(template.variables[i].choices) < 2 for i in used):
        return None
    for _ in range(params.max_draws):
        values = [v.value for v in template.variables]
        for i in used:
            values[i] = rng.choice(template.variables[i].choices)
        if not _apply_relations(template, values):
            continue
        if all(values[i] == template.variables[i].value for i in used):
            continue
        if any(values[i] in template.constants for i in used):
            continue
        try:
            results = template.recompute(values)
        except (ZeroDivisionError, ValueError):
            continue
        if _draw_ok(template, values, results, params.max_growth):
            return values, results
    return None


# ---------------------------------------------------------------------------------------------------- rewriting


def article_for(number_text: str) -> str:
    """"an" before a number read with a vowel sound (8, 11, 18, 80, 800, 11,000, 18 million), else "a"."""
    digits = number_text.lstrip("$").split(".")[0].replace(",", "")
    if not digits:
        return "a"
    if digits.startswith("8"):
        return "an"
    lead = digits[: len(digits) % 3 or 3]
    return "an" if lead in ("11", "18") else "a"


_ARTICLE_BEFORE = re.compile(r"\b([Aa]n?)(\s+\$?)$")


def _with_article(before: str, number_text: str) -> str:
    """``before`` with a trailing "a"/"an" made to agree with the number that follows it."""
    m = _ARTICLE_BEFORE.search(before)
    if not m:
        return before
    article = article_for(number_text)
    if m.group(1)[0].isupper():
        article = article.capitalize()
    return before[: m.start(1)] + article + m.group(2)


def _rewrite_question(template: Template, values: list[Fraction]) -> str:
    out, last = "", 0
    for start, end, idx in template.spans:
        text = format_number(values[idx], like=template.question[start:end])
        if text is None:
            raise TemplateError("unformattable_number")
        out = _with_article(out + template.question[last:start], text) + text
        last = end
    return out + template.question[last:]


def _operand_values(template: Template, values: list[Fraction], results: list[Fraction], step: Step) -> list:
    return [_operand(kind, ref, values, results) for kind, ref in step.refs]


def _rewrite_solution(template: Template, values: list[Fraction], results: list[Fraction], answer: Fraction) -> str:
    """Rewrite annotations exactly and prose numbers by value, line by line; ambiguity → ``TemplateError``."""
    global_map: dict[Fraction, set[Fraction]] = {}
    for i, var in enumerate(template.variables):
        if var.used:
            global_map.setdefault(var.value, set()).add(values[i])
            if var.percent:
                global_map.setdefault(var.value / 100, set()).add(values[i] / 100)
                global_map.setdefault(100 - var.value, set()).add(100 - values[i])
    for step, new in zip(template.steps, results):
        global_map.setdefault(step.result, set()).add(new)

    step_iter = iter(range(len(template.steps)))
    out_lines = []
    for line in template.solution.split("\n"):
        if FINAL.match(line):
            out_lines.append(f"#### {format_number(answer)}")
            continue
        local_map: dict[Fraction, set[Fraction]] = {}
        pieces = []
        for ann in ANNOTATION.finditer(line):
            j = next(step_iter)
            step = template.steps[j]
            operands = _operand_values(template, values, results, step)
            lits = expr_literals(step.expr)
            expr = step.expr
            for lit, new in sorted(zip(lits, operands), key=lambda p: -p[0].start):
                text = format_number(new, like=lit.text)
                if text is None:
                    raise TemplateError("unformattable_number")
                expr = expr[: lit.start] + text + expr[lit.end :]
                local_map.setdefault(lit.value, set()).add(new)
            result_text = format_number(results[j], like=step.result_text)
            local_map.setdefault(step.result, set()).add(results[j])
            pieces.append((ann.start(), ann.end(), f"<<{expr}={result_text}>>"))
        # prose numbers outside annotations
        protected = [(s, e) for s, e, _ in pieces]

        def in_annotation(pos: int, protected: list[tuple[int, int]] = protected) -> bool:
            return any(s <= pos < e for s, e in protected)

        edits: list[tuple[int, int, str]] = list(pieces)
        for m in NUM_PROSE.finditer(line):
            if in_annotation(m.start()):
                continue
            old = parse_number(m.group(0))
            targets = local_map.get(old) or global_map.get(old)
            if not targets:
                if old in template.constants or (old.denominator == 1 and old <= 12):
                    continue
                raise TemplateError("unmapped_solution_number")
            if len(targets) > 1:
                raise TemplateError("ambiguous_solution_number")
            text = format_number(next(iter(targets)), like=m.group(0))
            if text is None:
                raise TemplateError("unformattable_number")
            edits.append((m.start(), m.end(), text))
        rebuilt, last = "", 0
        for start, end, text in sorted(edits):
            rebuilt = _with_article(rebuilt + line[last:start], text) + text
            last = end
        out_lines.append(rebuilt + line[last:])
    return "\n".join(out_lines)


def make_variant(template: Template, rng: Any, params: Params) -> tuple[str, str, str] | None:
    """One (question, solution, answer) variant, or None if no draw satisfied the constraints."""
    drawn = draw_variant(template, rng, params)
    if drawn is None:
        return None
    values, results = drawn
    answer = template.answer(values, results)
    question = _rewrite_question(template, values)
    solution = _rewrite_solution(template, values, results, answer)
    answer_text = format_number(answer)
    if answer_text is None:
        return None
    # self-check: the rewritten trace must recompute and end in the new answer
    check = build_check(solution)
    if check != answer:
        raise TemplateError("rewrite_self_check_failed")
    return question, solution, answer_text


def build_check(solution: str) -> Fraction | None:
    """Recompute every annotation in ``solution``; return the final answer if all agree, else None."""
    for ann in ANNOTATION.finditer(solution):
        lits = expr_literals(ann.group(1))
        try:
            if evaluate(ann.group(1), [lit.value for lit in lits]) != parse_number(ann.group(2).replace("$", "")):
                return None
        except (ValueError, ZeroDivisionError, SyntaxError):
            return None
    final = FINAL.search(solution)
    return parse_number(final.group(1)) if final else None


# ---------------------------------------------------------------------------------------------------- the stage


def run(records: list[dict[str, Any]], params: Params, ctx: StageContext) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rec in records:
        ctx.funnel.add(ctx.stage, "in")
        try:
            template = build_template(rec["question"], rec.get("solution") or "")
        except TemplateError as exc:
            ctx.funnel.reject(ctx.stage, exc.reason)
            ctx.advance(1)
            continue
        ctx.funnel.add(ctx.stage, "templated")
        rng = ctx.rng(rec["id"])
        seen = {rec["question"]}
        for k in range(params.variants_per_seed):
            try:
                variant = make_variant(template, rng, params)
            except TemplateError as exc:
                ctx.funnel.reject(ctx.stage, exc.reason)
                continue
            if variant is None:
                ctx.funnel.reject(ctx.stage, "no_valid_draw")
                continue
            question, solution, answer = variant
            if question in seen:
                ctx.funnel.reject(ctx.stage, "repeated_variant")
                continue
            seen.add(question)
            out.append(
                derive(
                    rec,
                    question=question,
                    solution=solution,
                    answer=answer,
                    method=NAME,
                    method_params={**params.model_dump(), "variant": k, "version": VERSION},
                    verification={
                        "status": "verified",
                        "method": "recompute",
                        "detail": f"{len(template.steps)} annotated steps recomputed exactly",
                    },
                )
            )
            ctx.funnel.add(ctx.stage, "generated")
        ctx.advance(1)
    return out
