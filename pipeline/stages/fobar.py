"""FOBAR backward questions (MetaMath, methods.md §2) without a model, exact by construction like ``symbolic``.

A backward question masks one number of a GSM8K problem as ``x``, states the forward answer and asks for ``x``:
"... If we know the answer to the above question is 72, what is the value of unknown variable x?" (MetaMath's
wording). Its gold is the masked number.

Why it needs no model: GSM8K solutions carry a calculator chain (``<<48/2=24>>``). ``symbolic`` links every
operand of that chain to exactly one source, rejecting any problem where a link is not certain; we reuse its
linking (``build_template``), replace the masked question number by a sympy symbol, recompute the chain as an
expression in ``x``, and solve ``chain(x) = answer``. Only chains linear in ``x`` (after clearing a denominator)
are kept, so ``x`` is unique; the solution must equal the masked number or the candidate is rejected. The worked
solution redoes the forward chain with ``x`` and then solves the equation step by step. Sympy runs in
``pipeline.verify``'s killable workers under a hard timeout.

A problem is skipped with the reason ``symbolic`` gives (ambiguous operands, unexplained constants, ...); a
masked number the answer does not depend on, or depends on non-linearly, is rejected and counted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.stages import StageContext
from pipeline.stages.symbolic import Template, TemplateError, build_template, format_number
from pipeline.verify.sandbox import STARTUP_TIMEOUT, VerifyTimeout, WorkerError, call

NAME = "fobar"
VERSION = "1"
OUTPUT = "rows"
VERIFIER = "recompute"

# MetaMath's FOBAR question (main_backward_reasoning.py): the masked question, then this line
ASK = "If we know the answer to the above question is {answer}, what is the value of unknown variable {var}?"
# coefficients with a denominator up to this are written as fractions (x/2, 3*x/4), larger ones as decimals (0.02*x)
SMALL_DENOMINATOR = 12
# the letter that stands for the masked number: x, unless the question already uses x as a word ("3 x 4")
UNKNOWNS = ("x", "y", "n", "k")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    questions_per_seed: int = Field(
        1, ge=1, le=50, description="backward questions per seed, each masking a different number (MetaMath: all)"
    )
    timeout_s: float = Field(5.0, gt=0, description="sympy time limit per masked number (killable worker)")


@dataclass(frozen=True)
class Backward:
    """A solved backward chain: the worked lines (plain text) and the masked number's value."""

    steps: list[str]
    equation: str
    solving: list[str]
    value: Fraction


# ------------------------------------------------------------------------------------------------ sympy part
# runs in a worker process (``pipeline.verify.sandbox.call``): only picklable data crosses. Values are elements of
# the rational-function field QQ(x): exact, always reduced, and far cheaper than general sympy expressions.


def _number(value: Fraction) -> str:
    return format_number(value) or f"{value.numerator}/{value.denominator}"


def _show(value: Any) -> str:
    """A value as GSM8K-style plain text: ``3*x/2 - 14``, ``0.9*x + 12``, ``(24*x - 12)/x``."""
    if isinstance(value, Fraction):
        return _number(value)
    var = str(value.field.symbols[0])
    if value.denom.is_ground:  # (x + 246)/2 reads x/2 + 123
        return _poly_text(value.numer * (1 / value.denom.LC), var)
    numer = _poly_text(value.numer, var)
    denom = _poly_text(value.denom, var)
    if len(value.numer.terms()) > 1:
        numer = f"({numer})"
    return f"{numer}/({denom})" if len(value.denom.terms()) > 1 or "*" in denom else f"{numer}/{denom}"


def _poly_text(poly: Any, var: str) -> str:
    """A polynomial in ``var`` with rational coefficients, highest power first (sympy's printer is 10× slower)."""
    text = ""
    for (power,), coeff in sorted(poly.terms(), key=lambda t: -t[0][0]):
        c = Fraction(int(coeff.numerator), int(coeff.denominator))
        sign, c = ("-" if c < 0 else "+"), abs(c)
        unit = var if power == 1 else f"{var}**{power}" if power else ""
        if not unit:
            term = _number(c)
        elif c == 1:
            term = unit
        elif c.denominator == 1 or (c.denominator > SMALL_DENOMINATOR and format_number(c) is not None):
            term = f"{_number(c)}*{unit}"
        else:  # x/2, 3*x/4: halves and thirds read better than 0.5*x
            term = f"{c.numerator}*{unit}/{c.denominator}" if c.numerator != 1 else f"{unit}/{c.denominator}"
        text += (f" {sign} " if text else ("-" if sign == "-" else "")) + term
    return text or "0"


def _operand_text(value: Any) -> str:
    """An operand inside a larger expression: parenthesised unless it is a bare number or symbol."""
    text = _show(value)
    return text if isinstance(value, Fraction) or not any(c in text for c in "+-*/") else f"({text})"


def _ground(value: Any) -> Fraction | None:
    """The value as a number when it does not depend on the unknown, else None."""
    if isinstance(value, Fraction):
        return value
    if value.numer.is_ground and value.denom.is_ground:
        q = value.numer.LC / value.denom.LC
        return Fraction(int(q.numerator), int(q.denominator))
    return None


def solve_backward(template: Template, index: int, var: str) -> Backward:
    """The forward chain of ``template`` with question number ``index`` as the unknown ``var``, solved for it.

    Raises ``TemplateError`` (its reason is the funnel key) when the answer does not depend on the number, depends
    on it non-linearly, or the solution is not the masked number.
    """
    import sympy as sp

    from pipeline.stages.symbolic import evaluate, expr_literals, operand_value

    field, x = sp.field(var, sp.QQ)

    def lift(value: Any) -> Any:
        return field(sp.QQ(value.numerator, value.denominator)) if isinstance(value, Fraction) else value

    values: list[Any] = [v.value for v in template.variables]
    values[index] = x
    results: list[Any] = []
    lines: list[str] = []
    for step in template.steps:
        operands = [operand_value(kind, ref, values, results) for kind, ref in step.refs]
        if all(isinstance(o, Fraction) for o in operands):
            results.append(step.result)
            lines.append(f"{_spaced(_plain_ops(step.expr))} = {step.result_text.strip()}")
            continue
        result = evaluate(step.expr, [lift(o) for o in operands])
        if isinstance(result, int):  # a ground value sympy handed back as a plain int
            result = Fraction(result)
        elif not isinstance(result, (Fraction, type(x))):
            raise TemplateError("inexact_arithmetic")
        ground = _ground(result)
        results.append(result if ground is None else ground)
        expr = _plain_ops(step.expr)
        for lit, operand in sorted(zip(expr_literals(step.expr), operands), key=lambda p: -p[0].start):
            shown = lit.text if isinstance(operand, Fraction) else _operand_text(operand)
            expr = expr[: lit.start] + shown + expr[lit.end :]
        expr, shown = _spaced(expr), _show(results[-1])
        lines.append(expr if expr.replace(" ", "") == shown.replace(" ", "") else f"{expr} = {shown}")
    chain, answer = results[-1], template.steps[-1].result
    if _ground(chain) is not None:
        raise TemplateError("answer_independent_of_masked_number")
    numer, denom = chain.numer, chain.denom
    if denom.is_ground:  # (x + 246)/2 = 148 is x/2 + 123 = 148: nothing to multiply out
        numer, denom = numer * (1 / denom.LC), denom * (1 / denom.LC)
    left, right = numer, denom * sp.QQ(answer.numerator, answer.denominator)
    equation = left - right
    if equation.degree() != 1:
        raise TemplateError("nonlinear_in_masked_number")
    coeffs = dict(equation.terms())
    coef, const = coeffs.get((1,), sp.QQ(0)), coeffs.get((0,), sp.QQ(0))
    root = -const / coef
    value = Fraction(int(root.numerator), int(root.denominator))
    if value != template.variables[index].value or chain.denom.evaluate(0, root) == 0:
        raise TemplateError("inverse_mismatch")
    solving = []
    if not denom.is_ground:
        solving.append(f"Multiplying both sides by {_operand_text(field(denom))}: {_show(field(left))} = "
                       f"{_show(field(right))}")
    moved = coef * x
    if field(left) != moved or field(right) != field(-const):  # the x terms to the left, the numbers right
        solving.append(f"Collecting the terms with {var}: {_show(moved)} = {_show(_ground(field(-const)))}")
    if coef != 1:
        factor = Fraction(int(coef.numerator), int(coef.denominator))
        if factor.denominator == 1 or factor.denominator > SMALL_DENOMINATOR:
            how = f"Dividing both sides by {_number(factor)}"
        else:  # 3*x/2 = 72: multiply by 2/3
            inverse = 1 / factor
            how = f"Multiplying both sides by {inverse.numerator}" + (
                f"/{inverse.denominator}" if inverse.denominator != 1 else "")
        solving.append(f"{how}: {var} = {_number(value)}")
    return Backward(lines, f"{_show(chain)} = {_number(answer)}", solving, value)


def _plain_ops(expr: str) -> str:
    """GSM8K's ``3x4`` / ``3×4`` / ``8÷2`` as ``3*4`` / ``8/2`` (same length, so literal offsets still hold): the
    letter x is the unknown here, never a multiplication sign."""
    return expr.replace("x", "*").replace("×", "*").replace("÷", "/")


def _spaced(expr: str) -> str:
    """``x*3`` → ``x * 3``; a power (``x**2``) and a leading minus stay as they are."""
    expr = re.sub(r"\s+", "", expr)
    return re.sub(r"(?<=[\w.)])(\*\*|[-+*/])(?=[\w.(])", lambda m: m.group(1) if m.group(1) == "**" else
                  f" {m.group(1)} ", expr)


# ------------------------------------------------------------------------------------------------ the stage


def unknown_name(question: str) -> str | None:
    """The letter for the masked number: the first of x, y, n, k the question does not use as a word."""
    return next((v for v in UNKNOWNS if not re.search(rf"(?<![\w']){v}(?![\w'])", question, re.I)), None)


def mask_span(question: str, start: int, end: int, var: str) -> str:
    """``question`` with the number at ``start:end`` written as ``var`` ("$48" → "$x", "40%" → "x%", "a 6 hour" →
    "an x hour")."""
    before = question[:start]
    if var in ("x", "n"):
        before = re.sub(r"\b([Aa])(\s+\$?)$", r"\1n\2", before)
    return before + var + question[end:]


def masked_question(template: Template, index: int, var: str) -> str:
    v = template.variables[index]
    return mask_span(template.question, v.start, v.end, var)


def fobar_question(masked: str, answer: str, var: str) -> str:
    """MetaMath's FOBAR question: the masked question, then the forward answer and the ask for the unknown."""
    return masked + "\n" + ASK.format(answer=answer, var=var)


def backward_question(template: Template, index: int, var: str) -> str:
    answer = format_number(template.steps[-1].result) or ""
    return fobar_question(masked_question(template, index, var), answer, var)



def worked_solution(backward: Backward, var: str, answer_text: str) -> str:
    lines = [
        f"Let {var} be the unknown number. Redo the solution of the question with {var} in its place:",
        *backward.steps,
        f"The answer to the question is {backward.equation.split(' = ')[0]}, and we know it is {answer_text}:",
        backward.equation,
        *backward.solving,
        f"The value of {var} is {_value(backward)}.",
        f"#### {_value(backward)}",
    ]
    return "\n".join(lines)


def _value(backward: Backward) -> str:
    return _number(backward.value)


def worker_ready() -> bool:
    """Called once per process with a long timeout: the worker imports this module (and sympy) outside the
    per-mask time limit."""
    return True


_WARM: set[int] = set()


def _warm_worker() -> None:
    if os.getpid() not in _WARM:
        call(f"{__name__}:worker_ready", timeout=STARTUP_TIMEOUT)
        _WARM.add(os.getpid())


def run(records: list[dict[str, Any]], params: Params, ctx: StageContext) -> list[dict[str, Any]]:
    from pipeline.records import derive  # not at module level: the sympy worker imports this module too

    _warm_worker()
    out: list[dict[str, Any]] = []
    for rec in records:
        ctx.funnel.add(ctx.stage, "in")
        try:
            template = build_template(rec["question"], rec.get("solution") or "")
        except TemplateError as exc:  # symbolic's reason: the chain cannot be linked with certainty
            ctx.reject(exc.reason)
            ctx.advance(1)
            continue
        var = unknown_name(template.question)
        if var is None:
            ctx.reject("no_free_letter_for_unknown")
            ctx.advance(1)
            continue
        ctx.funnel.add(ctx.stage, "templated")
        masks = [i for i, v in enumerate(template.variables) if v.used]
        made = 0
        for index in ctx.rng(rec["id"]).sample(masks, len(masks)):
            if made == params.questions_per_seed:
                break
            question = backward_question(template, index, var)
            try:
                backward = call(f"{__name__}:solve_backward", template, index, var, timeout=params.timeout_s)
            except VerifyTimeout:
                ctx.reject("sympy_timeout", _dropped(rec, question), f"masked number {index}")
                continue
            except WorkerError as exc:  # the worker sends the exception as "TemplateError: <reason>"
                kind, _, reason = str(exc).partition(": ")
                ctx.reject(reason if kind == "TemplateError" else "sympy_error", _dropped(rec, question), str(exc)[:300])
                continue
            answer = _value(backward)
            out.append(
                derive(
                    rec,
                    question=question,
                    solution=worked_solution(backward, var, format_number(template.steps[-1].result) or ""),
                    answer=answer,
                    method=NAME,
                    method_params={**params.model_dump(), "version": VERSION, "masked": template.variables[index].text},
                    verification={
                        "status": "verified",
                        "method": "recompute",
                        "detail": f"{len(template.steps)} annotated steps solved for {var} exactly; {var} = masked "
                        f"{template.variables[index].text}",
                    },
                )
            )
            made += 1
            ctx.funnel.add(ctx.stage, "generated")
        ctx.advance(1)
    return out


def _dropped(rec: dict[str, Any], question: str) -> dict[str, Any]:
    from pipeline.records import make_record

    return make_record(question=question, solution=None, answer=None, method=NAME, source=rec.get("source"),
                       parent_ids=[rec["id"]], verification={"status": "failed"})
