"""The sympy side: turn answer trees into sympy expressions and decide the pairs the fast paths left open.

Imported only inside the sandbox worker process (see sandbox.py), where a hard timeout bounds every call.
"""

from __future__ import annotations

import sympy as sp

from . import evaluate as ev
from .parse import Node

_FUNCS = {
    "sin": sp.sin,
    "cos": sp.cos,
    "tan": sp.tan,
    "cot": sp.cot,
    "sec": sp.sec,
    "csc": sp.csc,
    "arcsin": sp.asin,
    "arccos": sp.acos,
    "arctan": sp.atan,
    "arccot": sp.acot,
    "arcsec": sp.asec,
    "arccsc": sp.acsc,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "tanh": sp.tanh,
    "coth": sp.coth,
    "exp": sp.exp,
    "floor": sp.floor,
    "ceil": sp.ceiling,
    "det": lambda x: x,
}


def to_sympy(node: Node) -> sp.Expr:
    """Exact sympy expression of a scalar tree (decimals become Rationals, degrees become radians)."""
    tag = node[0]
    if tag == "n":
        return sp.Rational(node[1].numerator, node[1].denominator)
    if tag == "s":
        return sp.Symbol(node[1])
    if tag == "w":
        return sp.Symbol(node[1])
    if tag == "pi":
        return sp.pi
    if tag == "e":
        return sp.E
    if tag == "i":
        return sp.I
    if tag == "inf":
        return sp.oo
    if tag == "+":
        return sp.Add(*[to_sympy(t) for t in node[1]])
    if tag == "*":
        return sp.Mul(*[to_sympy(f) for f in node[1]])
    if tag == "neg":
        return -to_sympy(node[1])
    if tag == "/":
        return to_sympy(node[1]) / to_sympy(node[2])
    if tag == "^":
        return sp.Pow(to_sympy(node[1]), to_sympy(node[2]))
    if tag == "!":
        return sp.factorial(to_sympy(node[1]))
    if tag == "sqrt":
        x = to_sympy(node[1])
        if node[2] is None:
            return sp.sqrt(x)
        k = to_sympy(node[2])
        if x.is_negative and k.is_integer and k.is_odd:
            return -sp.root(-x, k)
        return sp.root(x, k)
    if tag == "abs":
        return sp.Abs(to_sympy(node[1]))
    if tag == "f":
        if node[1] in ("gcd", "lcm") and node[2][0] == "tuple":
            args = [to_sympy(a) for a in node[2][1]]
            return sp.gcd(*args) if node[1] == "gcd" else sp.lcm(*args)
        return _FUNCS[node[1]](to_sympy(node[2]))
    if tag == "log":
        x = to_sympy(node[1])
        return sp.log(x) if node[2] is None else sp.log(x, to_sympy(node[2]))
    if tag == "binom":
        return sp.binomial(to_sympy(node[1]), to_sympy(node[2]))
    if tag == "pct":
        return to_sympy(node[1]) / 100
    if tag == "deg":
        return to_sympy(node[1]) * sp.pi / 180
    if tag == "unit":
        return to_sympy(node[1])
    if tag == "based":
        return sp.Integer(int(node[1], node[2]))
    if tag == "bigop":
        index = sp.Symbol(node[2])  # the same symbol as the body's ('s', '@1')
        limits = (index, to_sympy(node[3]), to_sympy(node[4]))
        big = sp.Sum if node[1] == "sum" else sp.Product
        return big(to_sympy(node[5]), limits)  # evaluated by `decide`, once its limits are known integers
    raise ValueError(f"not a scalar: {tag}")


def _is_zero(expr: sp.Expr) -> bool:
    """Whether an expression is identically zero: exact simplification first, high-precision numerics last."""
    if expr == 0:
        return True
    if expr.is_number:
        if expr.is_Rational:
            return False
        verdict = expr.equals(0)
        if verdict is not None:
            return bool(verdict)
        value = sp.N(expr, 120)
        return bool(abs(value) < sp.Float(10) ** -100)
    simplified = sp.simplify(expr)
    if simplified == 0:
        return True
    verdict = simplified.equals(0)
    return bool(verdict)


def _limit_symbols(node: object, out: set[str]) -> set[str]:
    """Free symbols in the limits of sums and products (`n` in `\\sum_{k=0}^{n-1}`)."""
    if isinstance(node, tuple) and node:
        if node[0] == "bigop":
            out |= ev.symbols(node[3]) | ev.symbols(node[4])
        for child in node[1:] if isinstance(node[0], str) else node:
            _limit_symbols(child, out)
    return out


def _evaluate_big_operators(ea: sp.Expr, eb: sp.Expr, names: set[str]) -> tuple[sp.Expr, sp.Expr]:
    """Sums and products in closed form. A limit counts terms, so its symbols are non-negative integers (without
    that, sympy answers `\\sum_{k=0}^n \\binom{n}{k}` with a Piecewise instead of 2^n)."""
    counts = {sp.Symbol(n): sp.Symbol(n, integer=True, nonnegative=True) for n in names}
    return ea.subs(counts).doit(), eb.subs(counts).doit()


def decide(a: Node, b: Node, mode: str) -> bool:
    """sympy decision for a pair of scalar trees ('value') or of equation differences ('equation')."""
    ea, eb = to_sympy(a), to_sympy(b)
    if ea.has(sp.Sum, sp.Product) or eb.has(sp.Sum, sp.Product):
        ea, eb = _evaluate_big_operators(ea, eb, _limit_symbols(a, set()) | _limit_symbols(b, set()))
    if mode == "value":
        if ea.is_Rational and eb.is_Rational:
            return bool(ea == eb)
        return _is_zero(sp.expand(ea - eb)) if not (ea.is_number and eb.is_number) else _is_zero(ea - eb)
    if mode == "equation":
        if eb == 0:
            return bool(ea == 0)
        ratio = sp.simplify(ea / eb)
        return bool(ratio.is_number and ratio != 0 and ratio.is_finite)
    raise ValueError(f"unknown mode {mode}")
