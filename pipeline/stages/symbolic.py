"""GSM-Symbolic-style variants of GSM8K problems, templated from GSM8K's own ``<<a*b=c>>`` annotations.

Why this works without an LLM: GSM8K solutions carry a calculator trace. We lift the question's numbers to
variables, link every operand of every annotated step to a question number, an earlier step's result, or a
constant, then resample the variables and recompute the whole chain in exact rational arithmetic. The new
``#### answer`` is correct by construction. Anything we cannot map unambiguously is rejected and counted, never
guessed: a wrong label in training data costs more than a missing row.

Constraints on a draw (rejection sampling): same magnitude and "roundness" as the original number, positive,
integers stay integers, every step whose original result was an integer must stay an integer (no remainder the
story forbids), results keep their sign and stay below one when they were, decimals stay short and exact.
"""

from __future__ import annotations

import ast
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
VERSION = "1"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variants_per_seed: int = Field(3, ge=1, le=100)
    max_draws: int = Field(300, ge=1, description="rejection-sampling draws per seed before giving up")
    max_growth: float = Field(50.0, gt=1, description="reject draws where a step result grows more than this ×")


# ------------------------------------------------------------------------------------------------ number tokens

# a number in prose: 1,234.5 | 12.5 | 12 | .5 ; not part of a word, a time (3:30) or a version string
NUM = re.compile(r"(?<![\w.,:/])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+|\.\d+)(?![\w:]|\.\d|,\d{3}|/\d)")
# the same in a solution's prose, where "48/2 = 24" is arithmetic, not a written fraction
NUM_PROSE = re.compile(r"(?<![\w.,:])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+|\.\d+)(?![\w:]|\.\d|,\d{3})")
ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
FINAL = re.compile(r"^####\s*(.+?)\s*$", re.M)

NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "hundred": 100, "thousand": 1000, "dozen": 12, "half": 2, "twice": 2, "double": 2,
    "triple": 3, "thrice": 3, "quarter": 4, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "tenth": 10,
    "once": 1, "score": 20, "pair": 2, "pairs": 2, "couple": 2, "dozens": 12,
}
# values a word in the question implies (a week has 7 days, "every other" halves): a question number equal to
# one of these could be the constant rather than the variable in the chain, so such a problem is ambiguous
IMPLIED_BY_WORD = {
    r"weeks?": (7,), r"days?": (7, 24), r"hours?": (24, 60), r"minutes?|mins?": (60,), r"seconds?|secs?": (60,),
    r"dozens?": (12,), r"feet|foot": (12, 3), r"inch(es)?": (12,), r"yards?": (3, 36), r"years?": (12, 52, 365),
    r"months?": (12, 30, 31), r"percent|%": (100,), r"cents?|pennies|penny": (100,), r"dimes?": (10,),
    r"nickels?": (5,), r"quarters?": (4, 25), r"every other|half|halves|twice|double|pairs?|couple|both": (2,),
    r"triple|thrice|third": (3,), r"gallons?": (4,), r"quarts?": (2, 4), r"pounds?|ounces?": (16,),
    r"centur(y|ies)": (100,), r"decades?": (10,), r"meters?|metres?": (100, 1000), r"km|kilo\w*|grams?": (1000,),
    r"liters?|litres?|ml|milliliters?": (1000,), r"hundred": (100,), r"thousand": (1000,),
}
# a stated unit definition ("1 foot is 12 inches", "60 minutes in an hour") is a constant, never a variable
DEFINITION = re.compile(
    r"\b1\s+[a-z]+\s+(?:is|=|equals|is equal to|has|contains|makes)\s+(\d[\d,.]*)"
    r"|\b(\d[\d,.]*)\s+[a-z]+\s+(?:in|per|make|makes)\s+(?:a|an|one|1)\s+[a-z]+",
    re.I,
)
# constants a solution may use without the question spelling them out (unit conversions, calendar, percent)
UNIT_CONSTANTS = {Fraction(v) for v in (24, 30, 31, 36, 48, 52, 60, 100, 1000, 360, 365, 366, 3600, 1440)}
UNIT_CONSTANTS |= {Fraction(1, 2), Fraction(1, 4), Fraction(3, 4), Fraction(1, 10), Fraction(1, 100)}


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
    value: Fraction
    tokens: list[str]  # original texts, for formatting
    percent: bool = False
    decimals: int = 0


@dataclass
class Step:
    expr: str
    result_text: str
    result: Fraction
    # per operand literal: ("var", i) | ("pct", i) | ("step", j) | ("const", value)
    refs: list[tuple[str, Any]] = field(default_factory=list)


@dataclass
class Template:
    question: str
    solution: str
    variables: list[Variable]
    spans: list[tuple[int, int, int]]  # (start, end, var index) of variable tokens in the question
    steps: list[Step]
    answer_ref: tuple[str, int]  # ("step", j) or ("var", i)
    constants: set[Fraction]

    def recompute(self, values: list[Fraction]) -> list[Fraction]:
        results: list[Fraction] = []
        for step in self.steps:
            operands = []
            for kind, ref in step.refs:
                if kind == "var":
                    operands.append(values[ref])
                elif kind == "pct":
                    operands.append(values[ref] / 100)
                elif kind == "step":
                    operands.append(results[ref])
                else:
                    operands.append(ref)
            results.append(evaluate(step.expr, operands))
        return results

    def answer(self, values: list[Fraction], results: list[Fraction]) -> Fraction:
        kind, ref = self.answer_ref
        return results[ref] if kind == "step" else values[ref]


def _question_numbers(question: str) -> tuple[list[Variable], list[tuple[int, int, int]], set[Fraction]]:
    """Variables (one per distinct value) and their spans; plus values the question fixes (words, times)."""
    variables: list[Variable] = []
    by_key: dict[tuple[Fraction, bool], int] = {}
    spans: list[tuple[int, int, int]] = []
    for m in NUM.finditer(question):
        text = m.group(0)
        value = parse_number(text)
        percent = question[m.end() : m.end() + 1] == "%" or question[m.end() : m.end() + 8].lower() == " percent"
        key = (value, percent)
        if key not in by_key:
            by_key[key] = len(variables)
            variables.append(Variable(value, [], percent, decimals_of(text)))
        idx = by_key[key]
        variables[idx].tokens.append(text)
        spans.append((m.start(), m.end(), idx))
    fixed = {Fraction(v) for w, v in NUMBER_WORDS.items() if re.search(rf"\b{w}\b", question, re.I)}
    for pattern, implied in IMPLIED_BY_WORD.items():
        if re.search(rf"(?<![a-z])(?:{pattern})(?![a-z])", question, re.I):
            fixed.update(Fraction(v) for v in implied)
    for m in DEFINITION.finditer(question):
        fixed.add(parse_number(m.group(1) or m.group(2)))
    # numbers we never touch: times like 3:30, fractions written 1/2
    for m in re.finditer(r"\d+(?=[:/]\d)|(?<=[:/])\d+", question):
        fixed.add(Fraction(int(m.group(0))))
    return variables, spans, fixed


def build_template(question: str, solution: str) -> Template:
    """Link the annotated chain to the question's numbers; raise ``TemplateError`` when it is ambiguous."""
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

    variables, spans, fixed = _question_numbers(question)
    if not variables:
        raise TemplateError("no_question_numbers")
    for var in variables:
        if var.value in fixed and not var.percent:
            raise TemplateError("number_word_collision")

    steps: list[Step] = []
    constants: set[Fraction] = set()
    used_vars: set[int] = set()
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
            earlier = [j for j, s in enumerate(steps) if s.result == lit.value]
            var_hits = [i for i, v in enumerate(variables) if v.value == lit.value and not v.percent]
            pct_hits = [i for i, v in enumerate(variables) if v.percent and v.value / 100 == lit.value]
            pct_raw = [i for i, v in enumerate(variables) if v.percent and v.value == lit.value]
            candidates = len(earlier[-1:]) + len(var_hits) + len(pct_hits) + len(pct_raw)
            if candidates > 1:
                raise TemplateError("ambiguous_operand")
            if earlier:
                step.refs.append(("step", earlier[-1]))
            elif var_hits or pct_raw:
                i = (var_hits or pct_raw)[0]
                step.refs.append(("var", i))
                used_vars.add(i)
            elif pct_hits:
                step.refs.append(("pct", pct_hits[0]))
                used_vars.add(pct_hits[0])
            else:
                value = lit.value
                explained = value in fixed or value in UNIT_CONSTANTS or (value.denominator == 1 and value <= 12)
                if not explained:
                    raise TemplateError("unexplained_constant")
                constants.add(value)
                step.refs.append(("const", value))
        steps.append(step)

    # the answer must be the last computed value: an answer that equals an earlier step is either a coincidence
    # or picked by a comparison ("the faster route"), and a new draw can flip the comparison
    if steps[-1].result != gold:
        raise TemplateError("answer_not_last_step")
    if re.search(r"[<>≤≥]", ANNOTATION.sub("", solution)):
        raise TemplateError("comparison_in_solution")
    answer_ref: tuple[str, int] = ("step", len(steps) - 1)
    if not used_vars:
        raise TemplateError("no_variables_in_chain")
    # variables the chain does not use stay as they are
    for i, var in enumerate(variables):
        if i not in used_vars:
            var.tokens = []
    spans = [s for s in spans if s[2] in used_vars]
    for i in used_vars:
        if variables[i].value in constants:
            raise TemplateError("variable_equals_constant")
    return Template(question, solution, variables, spans, steps, answer_ref, constants)


# ----------------------------------------------------------------------------------------------------- sampling


def sample_value(var: Variable, rng: Any) -> Fraction:
    """A new value of the same kind: same digit count and roundness, positive, same decimal places."""
    if var.percent:
        v = int(var.value) if var.value.denominator == 1 else None
        if v is not None and 0 < v < 100:
            step = 5 if v % 5 == 0 else 1
            return Fraction(rng.randrange(step, 100, step))
        return var.value
    scale = 10**var.decimals
    units = var.value * scale
    if units.denominator != 1 or units <= 1 and var.decimals == 0:
        return var.value  # 0 and 1 are structural ("1 box") — keep them
    units = int(units)
    zeros = len(str(units)) - len(str(units).rstrip("0"))
    zeros = min(zeros, len(str(units)) - 1)
    core_digits = len(str(units)) - zeros
    low = 10 ** (core_digits - 1)
    high = 10**core_digits - 1
    if core_digits == 1:
        low = 2 if var.decimals == 0 and zeros == 0 else 1
    new_units = rng.randint(low, high) * 10**zeros
    return Fraction(new_units, scale)


def _draw_ok(template: Template, values: list[Fraction], results: list[Fraction], growth: float) -> bool:
    for step, new in zip(template.steps, results):
        old = step.result
        if old.denominator == 1 and new.denominator != 1:
            return False
        if (old > 0 and new <= 0) or (old >= 0 and new < 0) or (old < 0 and new >= 0):
            return False
        if 0 < old < 1 and not new < 1:
            return False
        if format_number(new, like=step.result_text) is None:
            return False
        if abs(new) > growth * max(abs(old), 1):
            return False
    return True


def draw_variant(template: Template, rng: Any, params: Params) -> tuple[list[Fraction], list[Fraction]] | None:
    used = {idx for _, _, idx in template.spans}
    for _ in range(params.max_draws):
        values = [
            sample_value(v, rng) if i in used else v.value for i, v in enumerate(template.variables)
        ]
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


def _rewrite_question(template: Template, values: list[Fraction]) -> str:
    out, last = [], 0
    for start, end, idx in template.spans:
        text = format_number(values[idx], like=template.question[start:end])
        if text is None:
            raise TemplateError("unformattable_number")
        out.append(template.question[last:start] + text)
        last = end
    out.append(template.question[last:])
    return "".join(out)


def _operand_values(template: Template, values: list[Fraction], results: list[Fraction], step: Step) -> list:
    operands = []
    for kind, ref in step.refs:
        operands.append(
            values[ref] if kind == "var" else values[ref] / 100 if kind == "pct"
            else results[ref] if kind == "step" else ref
        )
    return operands


def _rewrite_solution(template: Template, values: list[Fraction], results: list[Fraction], answer: Fraction) -> str:
    """Rewrite annotations exactly and prose numbers by value, line by line; ambiguity → ``TemplateError``."""
    global_map: dict[Fraction, set[Fraction]] = {}
    for i, var in enumerate(template.variables):
        if var.tokens:
            global_map.setdefault(var.value, set()).add(values[i])
            if var.percent:
                global_map.setdefault(var.value / 100, set()).add(values[i] / 100)
    for step, new in zip(template.steps, results):
        global_map.setdefault(step.result, set()).add(new)

    step_iter = iter(range(len(template.steps)))
    out_lines = []
    for line in template.solution.split("\n"):
        if FINAL.match(line):
            out_lines.append(f"#### {format_number(answer)}")
            continue
        local_map: dict[Fraction, set[Fraction]] = {}
        pieces, last = [], 0
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
        rebuilt, last = [], 0
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
        for start, end, text in sorted(edits):
            rebuilt.append(line[last:start] + text)
            last = end
        rebuilt.append(line[last:])
        out_lines.append("".join(rebuilt))
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
