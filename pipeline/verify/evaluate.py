"""Evaluate answer trees: exactly over Q(i) with Python Fractions, or numerically with mpmath.

Both evaluators refuse work that could be slow (huge powers, big factorials) by raising TooBig; those pairs go to
the sandboxed sympy worker, which runs under a hard timeout. Neither ever touches sympy.
"""

from __future__ import annotations

import itertools
import math
import threading
from fractions import Fraction

import mpmath

from .parse import Node

MAX_EXACT_BITS = 60_000  # largest exact power result computed in-process (about 18k digits)
MAX_FACTORIAL = 3_000
MAX_MP_MAG = 1_000_000  # mpmath magnitudes (bits) beyond this go to the sandbox
MAX_VARIANTS = 64
SAFE_LITERAL = 10**12
MAX_TERMS = 1_000  # sums and products with more terms (or symbolic limits) are decided by sympy


class NotExact(Exception):
    """The value is not a (Gaussian) rational the exact evaluator can produce."""


class TooBig(Exception):
    """Evaluating in-process could be slow; decide in the sandboxed worker instead."""


class EvalError(Exception):
    """The tree has no numeric value (division by zero, infinity in arithmetic, a non-scalar)."""


class QI:
    """Gaussian rational re + im*i, just enough arithmetic for exact complex answers."""

    __slots__ = ("re", "im")

    def __init__(self, re: Fraction, im: Fraction) -> None:
        self.re, self.im = Fraction(re), Fraction(im)

    @staticmethod
    def of(x: Fraction | QI) -> QI:
        return x if isinstance(x, QI) else QI(x, Fraction(0))

    def norm(self) -> Fraction | QI:
        return self.re if self.im == 0 else self

    def __eq__(self, other: object) -> bool:
        if isinstance(other, QI):
            return self.re == other.re and self.im == other.im
        if isinstance(other, (Fraction, int)):
            return self.im == 0 and self.re == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.re, self.im))

    def __repr__(self) -> str:
        return f"QI({self.re}, {self.im})"


def _add(a: Fraction | QI, b: Fraction | QI) -> Fraction | QI:
    if isinstance(a, QI) or isinstance(b, QI):
        a, b = QI.of(a), QI.of(b)
        return QI(a.re + b.re, a.im + b.im).norm()
    return a + b


def _mul(a: Fraction | QI, b: Fraction | QI) -> Fraction | QI:
    if isinstance(a, QI) or isinstance(b, QI):
        a, b = QI.of(a), QI.of(b)
        return QI(a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re).norm()
    return a * b


def _neg(a: Fraction | QI) -> Fraction | QI:
    return QI(-a.re, -a.im) if isinstance(a, QI) else -a


def _inv(a: Fraction | QI) -> Fraction | QI:
    if a == 0:
        raise EvalError("division by zero")
    if isinstance(a, QI):
        d = a.re * a.re + a.im * a.im
        return QI(a.re / d, -a.im / d).norm()
    return 1 / a


def _bits(a: Fraction | QI) -> int:
    if isinstance(a, QI):
        return max(_bits(a.re), _bits(a.im))
    return max(a.numerator.bit_length(), a.denominator.bit_length(), 1)


def _int_root(n: int, k: int) -> int | None:
    """Exact k-th root of a non-negative integer, or None."""
    if n < 2:
        return n
    r = int(round(n ** (1.0 / k))) if n.bit_length() < 1000 else _newton_root(n, k)
    for cand in (r - 1, r, r + 1):
        if cand >= 0 and cand**k == n:
            return cand
    return None


def _newton_root(n: int, k: int) -> int:
    x = 1 << ((n.bit_length() + k - 1) // k)
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return x
        x = y


def _rational_root(a: Fraction, k: int) -> Fraction | None:
    if a < 0:
        return None
    p, q = _int_root(a.numerator, k), _int_root(a.denominator, k)
    return None if p is None or q is None else Fraction(p, q)


def _power(base: Fraction | QI, exp: Fraction | QI) -> Fraction | QI:
    if isinstance(exp, QI):
        raise NotExact("complex exponent")
    if exp.denominator == 1:
        e = exp.numerator
        if base == 0:
            if e < 0:
                raise EvalError("zero to a negative power")
            return Fraction(1) if e == 0 else Fraction(0)
        if base == 1:
            return Fraction(1)
        if base == -1 and not isinstance(base, QI):
            return Fraction(-1 if e % 2 else 1)
        if _bits(base) * abs(e) > MAX_EXACT_BITS:
            raise TooBig("power too large")
        if isinstance(base, QI):
            result: Fraction | QI = Fraction(1)
            b = base if e > 0 else _inv(base)
            for _ in range(abs(e)):
                result = _mul(result, b)
            return result
        return base**e
    if isinstance(base, QI) or base < 0:
        raise NotExact("root of a negative or complex base")
    if exp.denominator > 1000:
        raise NotExact("exponent denominator too large")
    root = _rational_root(base, exp.denominator)
    if root is None:
        raise NotExact("irrational root")
    return _power(root, Fraction(exp.numerator))


def _unary_fraction(a: Fraction | QI, what: str) -> Fraction:
    if isinstance(a, QI):
        raise NotExact(f"complex {what}")
    return a


def exact(node: Node, env: dict[str, Fraction] | None = None) -> Fraction | QI:
    """Exact value of a scalar tree as Fraction or QI; NotExact / TooBig / EvalError otherwise."""
    tag = node[0]
    if tag == "n":
        return node[1]
    if tag == "+":
        total: Fraction | QI = Fraction(0)
        for t in node[1]:
            total = _add(total, exact(t, env))
        return total
    if tag == "*":
        prod: Fraction | QI = Fraction(1)
        for f in node[1]:
            prod = _mul(prod, exact(f, env))
            if _bits(prod) > MAX_EXACT_BITS:
                raise TooBig("product too large")
        return prod
    if tag == "neg":
        return _neg(exact(node[1], env))
    if tag == "/":
        return _mul(exact(node[1], env), _inv(exact(node[2], env)))
    if tag == "^":
        return _power(exact(node[1], env), exact(node[2], env))
    if tag == "s":
        if env is not None and node[1] in env:
            return env[node[1]]
        raise NotExact("symbol")
    if tag == "i":
        return QI(Fraction(0), Fraction(1))
    if tag in ("pi", "e"):
        raise NotExact("transcendental constant")
    if tag == "inf":
        raise EvalError("infinity")
    if tag == "!":
        x = _unary_fraction(exact(node[1], env), "factorial")
        if x.denominator != 1 or x < 0:
            raise NotExact("factorial of a non-integer")
        if x > MAX_FACTORIAL:
            raise TooBig("factorial too large")
        return Fraction(math.factorial(int(x)))
    if tag == "sqrt":
        k = 2
        if node[2] is not None:
            kk = _unary_fraction(exact(node[2], env), "root index")
            if kk.denominator != 1 or not 2 <= kk <= 1000:
                raise NotExact("unusual root index")
            k = int(kk)
        x = exact(node[1], env)
        if isinstance(x, QI):
            raise NotExact("root of a complex number")
        if x >= 0:
            r = _rational_root(x, k)
            if r is None:
                raise NotExact("irrational root")
            return r
        r = _rational_root(-x, k)
        if r is None:
            raise NotExact("irrational root")
        if k % 2:
            return -r
        if k == 2:
            return QI(Fraction(0), r)
        raise NotExact("even root of a negative number")
    if tag == "abs":
        x = exact(node[1], env)
        if isinstance(x, QI):
            r = _rational_root(x.re * x.re + x.im * x.im, 2)
            if r is None:
                raise NotExact("irrational modulus")
            return r
        return abs(x)
    if tag == "f":
        name = node[1]
        if name in ("floor", "ceil"):
            x = _unary_fraction(exact(node[2], env), name)
            return Fraction(math.floor(x) if name == "floor" else math.ceil(x))
        if name in ("gcd", "lcm") and node[2][0] == "tuple":
            vals = [_unary_fraction(exact(v, env), name) for v in node[2][1]]
            if any(v.denominator != 1 for v in vals):
                raise NotExact("gcd of non-integers")
            ints = [int(v) for v in vals]
            return Fraction(math.gcd(*ints) if name == "gcd" else math.lcm(*ints))
        raise NotExact("function")
    if tag == "log":
        x = _unary_fraction(exact(node[1], env), "log")
        if node[2] is None:
            if x == 1:
                return Fraction(0)
            raise NotExact("natural log")
        b = _unary_fraction(exact(node[2], env), "log base")
        if x <= 0 or b <= 0 or b == 1:
            raise NotExact("log outside its domain")
        return _exact_log(x, b)
    if tag == "binom":
        n = _unary_fraction(exact(node[1], env), "binomial")
        k = _unary_fraction(exact(node[2], env), "binomial")
        if n.denominator != 1 or k.denominator != 1 or n < 0:
            raise NotExact("binomial of non-integers")
        if n > 100_000:
            raise TooBig("binomial too large")
        return Fraction(math.comb(int(n), int(k)) if k >= 0 else 0)
    if tag == "pct":
        return _mul(exact(node[1], env), Fraction(1, 100))
    if tag == "unit":
        return exact(node[1], env)
    if tag == "based":
        return Fraction(int(node[1], node[2]))
    if tag == "deg":
        raise NotExact("degrees inside an expression")
    if tag == "bigop":
        return _fold(node, lambda k: exact(node[5], {**(env or {}), node[2]: Fraction(k)}), _add, _mul, env)
    raise EvalError(f"not a scalar: {tag}")


def _big_range(node: Node, env: dict | None) -> range:
    """The index range of a sum or product with numeric limits; symbolic or huge ranges and nested sums (whose
    work multiplies) go to sympy, under the sandbox timeout."""
    if contains(node[5], frozenset({"bigop"})):
        raise TooBig("nested sums")
    try:
        lo, hi = exact(node[3], env), exact(node[4], env)
    except (NotExact, EvalError) as exc:  # symbolic or infinite limits: sympy's question
        raise NotExact("limits of a sum") from exc
    if isinstance(lo, QI) or isinstance(hi, QI) or lo.denominator != 1 or hi.denominator != 1:
        raise NotExact("non-integer limits of a sum")
    if hi - lo > MAX_TERMS:
        raise TooBig("sum with too many terms")
    return range(int(lo), int(hi) + 1)


def _fold(node: Node, term, add, mul, env: dict | None):
    """Sum or product of `term(k)` over the index range of a big operator (empty sum 0, empty product 1)."""
    total = Fraction(0) if node[1] == "sum" else Fraction(1)
    combine = add if node[1] == "sum" else mul
    for k in _big_range(node, env):
        total = combine(total, term(k))
        if _bits(total) > MAX_EXACT_BITS:
            raise TooBig("sum or product too large")
    return total


def _exact_log(x: Fraction, b: Fraction) -> Fraction:
    """log_b(x) when it is a rational p/q with small q (`\\log_8 2` = 1/3), else NotExact."""
    estimate = (math.log(x.numerator) - math.log(x.denominator)) / (
        math.log(b.numerator) - math.log(b.denominator)
    )
    for q in range(1, 13):
        p = round(estimate * q)
        if abs(p) * _bits(b) > MAX_EXACT_BITS or q * _bits(x) > MAX_EXACT_BITS:
            raise TooBig("log check too large")
        if x**q == b**p:
            return Fraction(p, q)
    raise NotExact("irrational log")


# ----------------------------------------------------------------------------------------------------------------

_LOCAL = threading.local()


def mp_context(dps: int = 60) -> mpmath.ctx_mp.MPContext:
    """A private mpmath context per thread (the global mpmath.mp precision is not thread-safe)."""
    ctx = getattr(_LOCAL, "ctx", None)
    if ctx is None:
        ctx = mpmath.ctx_mp.MPContext()
        _LOCAL.ctx = ctx
    ctx.dps = dps
    return ctx


class Safety:
    """Records whether a numeric agreement can be trusted (small literals, moderate magnitudes)."""

    __slots__ = ("safe",)

    def __init__(self) -> None:
        self.safe = True


def _check(ctx: mpmath.ctx_mp.MPContext, v: object, safety: Safety) -> object:
    if not ctx.isfinite(v):
        raise EvalError("not finite")
    mag = ctx.mag(v) if v != 0 else 0
    if abs(mag) > MAX_MP_MAG:
        raise TooBig("magnitude")
    if v != 0 and abs(mag) > 100:
        safety.safe = False
    return v


def numeric(
    node: Node, ctx: mpmath.ctx_mp.MPContext, safety: Safety, env: dict[str, object] | None = None
) -> object:
    """mpmath value of a scalar tree (angles in degrees become radians)."""
    tag = node[0]
    if tag == "n":
        v = node[1]
        if abs(v.numerator) > SAFE_LITERAL or v.denominator > SAFE_LITERAL:
            safety.safe = False
        return ctx.mpf(v.numerator) / v.denominator
    if tag == "+":
        total = ctx.mpf(0)
        for t in node[1]:
            total += numeric(t, ctx, safety, env)
        return _check(ctx, total, safety)
    if tag == "*":
        prod = ctx.mpf(1)
        for f in node[1]:
            prod *= numeric(f, ctx, safety, env)
        return _check(ctx, prod, safety)
    if tag == "neg":
        return -numeric(node[1], ctx, safety, env)
    if tag == "/":
        d = numeric(node[2], ctx, safety, env)
        if d == 0:
            raise EvalError("division by zero")
        return _check(ctx, numeric(node[1], ctx, safety, env) / d, safety)
    if tag == "^":
        b = numeric(node[1], ctx, safety, env)
        e = numeric(node[2], ctx, safety, env)
        if abs(e) > 200:
            safety.safe = False
        if b == 0:
            if ctx.re(e) <= 0:
                raise EvalError("zero to a non-positive power")
            return ctx.mpf(0)
        if abs(e) * max(1, abs(ctx.mag(b))) > MAX_MP_MAG:
            raise TooBig("power too large")
        return _check(ctx, ctx.power(b, e), safety)
    if tag == "s":
        if env is not None and node[1] in env:
            return env[node[1]]
        raise EvalError("free symbol")
    if tag == "pi":
        return +ctx.pi
    if tag == "e":
        return +ctx.e
    if tag == "i":
        return ctx.mpc(0, 1)
    if tag == "inf":
        raise EvalError("infinity")
    if tag == "!":
        x = numeric(node[1], ctx, safety, env)
        if abs(x) > 100_000:
            raise TooBig("factorial too large")
        if abs(x) > 30:
            safety.safe = False
        if ctx.im(x) == 0 and ctx.re(x) < 0 and ctx.re(x) == int(ctx.re(x)):
            raise EvalError("factorial of a negative integer")
        return _check(ctx, ctx.gamma(x + 1), safety)
    if tag == "sqrt":
        x = numeric(node[1], ctx, safety, env)
        if node[2] is None:
            return ctx.sqrt(x)
        k = numeric(node[2], ctx, safety, env)
        if ctx.im(x) == 0 and ctx.re(x) < 0 and k == int(k) and int(k) % 2 == 1:
            return -ctx.root(-x, int(k))
        if k == 0:
            raise EvalError("zeroth root")
        return _check(ctx, ctx.power(x, 1 / k), safety)
    if tag == "abs":
        return abs(numeric(node[1], ctx, safety, env))
    if tag == "f":
        return _check(ctx, _function(node[1], node[2], ctx, safety, env), safety)
    if tag == "log":
        x = numeric(node[1], ctx, safety, env)
        if x == 0:
            raise EvalError("log of zero")
        if node[2] is None:
            return ctx.log(x)
        b = numeric(node[2], ctx, safety, env)
        if b == 0 or b == 1:
            raise EvalError("bad log base")
        return _check(ctx, ctx.log(x) / ctx.log(b), safety)
    if tag == "binom":
        n = numeric(node[1], ctx, safety, env)
        if abs(n) > 100_000:
            raise TooBig("binomial too large")
        return _check(ctx, ctx.binomial(n, numeric(node[2], ctx, safety, env)), safety)
    if tag == "pct":
        return numeric(node[1], ctx, safety, env) / 100
    if tag == "deg":
        return numeric(node[1], ctx, safety, env) * ctx.pi / 180
    if tag == "unit":
        return numeric(node[1], ctx, safety, env)
    if tag == "based":
        return ctx.mpf(int(node[1], node[2]))
    if tag == "bigop":
        try:
            indices = _big_range(node, None)
        except NotExact as exc:
            raise EvalError(str(exc)) from exc
        total = ctx.mpf(0) if node[1] == "sum" else ctx.mpf(1)
        for k in indices:
            value = numeric(node[5], ctx, safety, {**(env or {}), node[2]: ctx.mpf(k)})
            total = total + value if node[1] == "sum" else total * value
        return _check(ctx, total, safety)
    raise EvalError(f"not a scalar: {tag}")


_FUNCS = {
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "cot": "cot",
    "sec": "sec",
    "csc": "csc",
    "arcsin": "asin",
    "arccos": "acos",
    "arctan": "atan",
    "arccot": "acot",
    "arcsec": "asec",
    "arccsc": "acsc",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "coth": "coth",
    "exp": "exp",
}


def _function(name: str, arg: Node, ctx: mpmath.ctx_mp.MPContext, safety: Safety, env: dict | None) -> object:
    if name in ("gcd", "lcm"):
        value = exact(("f", name, arg))
        return ctx.mpf(value.numerator) / value.denominator
    x = numeric(arg, ctx, safety, env)
    if name in ("floor", "ceil"):
        if ctx.im(x) != 0:
            raise EvalError("floor of a complex number")
        safety.safe = False  # a value near an integer makes floor unstable
        return ctx.floor(x) if name == "floor" else ctx.ceil(x)
    if name == "det":
        return x
    fn = _FUNCS.get(name)
    if fn is None:
        raise EvalError(f"unknown function {name}")
    if name == "exp" and abs(x) > 10_000:
        raise TooBig("exp too large")
    try:
        return getattr(ctx, fn)(x)
    except (ValueError, ZeroDivisionError) as exc:
        raise EvalError(str(exc)) from exc


def close(ctx: mpmath.ctx_mp.MPContext, a: object, b: object) -> bool:
    """Agreement to all but 15 of the context's digits, relative to the larger magnitude."""
    scale = max(abs(a), abs(b))
    if scale == 0:
        return True
    return abs(a - b) <= scale * ctx.mpf(10) ** (15 - ctx.dps)


# ----------------------------------------------------------------------------------------------------------------


def symbols(node: object, out: set[str] | None = None) -> set[str]:
    """Free variable names of a tree."""
    if out is None:
        out = set()
    if isinstance(node, tuple) and node:
        if not isinstance(node[0], str):  # a tuple of children
            for child in node:
                symbols(child, out)
            return out
        if node[0] == "s" and isinstance(node[1], str):
            if not node[1].startswith("@"):  # `@1` is the bound index of a sum, not a free variable
                out.add(node[1])
            return out
        for child in node[1:]:
            if isinstance(child, tuple):
                symbols(child, out)
    return out


def contains(node: object, tags: frozenset[str]) -> bool:
    """Whether any sub-tree has one of these tags."""
    if isinstance(node, tuple) and node:
        if not isinstance(node[0], str):  # a tuple of children
            return any(contains(child, tags) for child in node)
        if node[0] in tags:
            return True
        return any(contains(child, tags) for child in node[1:] if isinstance(child, tuple))
    return False


def expand_pm(node: Node) -> list[Node]:
    """All sign choices of the ± signs in a tree (`1 \\pm \\sqrt 2` -> two trees); EvalError past 64."""
    if not contains(node, frozenset({"pm"})):
        return [node]
    tag = node[0]
    if tag == "pm":
        a, b = node[1], node[2]
        out: list[Node] = []
        for bb in expand_pm(b):
            if a is None:
                out += [bb, ("neg", bb)]
            else:
                for aa in expand_pm(a):
                    out += [("+", (aa, bb)), ("+", (aa, ("neg", bb)))]
        return _limit(out)
    if tag in ("+", "*"):
        choices = [expand_pm(c) for c in node[1]]
        return _limit(
            [(tag, tuple(combo)) for combo in itertools.islice(itertools.product(*choices), MAX_VARIANTS + 1)]
        )
    parts = [expand_pm(c) if isinstance(c, tuple) and c and isinstance(c[0], str) else [c] for c in node[1:]]
    return _limit([(tag, *combo) for combo in itertools.islice(itertools.product(*parts), MAX_VARIANTS + 1)])


def _limit(out: list[Node]) -> list[Node]:
    if len(out) > MAX_VARIANTS:
        raise EvalError("too many sign choices")
    return out
