"""Decide whether a given final answer denotes the same object as the gold answer.

The gold answer is the reference and fixes the semantics: a gold bare list (`3, 5, 7`) is a set of solutions
(order-free), a gold tuple `(1,-16,-4,43)` is ordered, a gold inequality or interval is a set of reals, a gold
`x = 5` accepts `5`, a gold `5\\%` accepts `5` and `0.05`, a gold `90^\\circ` accepts `\\pi/2`. Scalars are
compared exactly (rationals over Q(i)) before anything else, then numerically with mpmath where agreement is
provably safe (small literals, moderate magnitudes), and the rest is escalated to sympy (run by the caller
under a hard timeout). An approximate decimal never equals an irrational gold (`3.14` is not `\\pi`).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from fractions import Fraction

from . import evaluate as ev
from .normalize import clean_latex, formula_marks, text_key
from .parse import Node, ParseError, parse_cleaned
from .sandbox import VerifyTimeout
from .units import convert_factor, unit_info

# escalate(a, b, mode) -> bool: sympy decision ('value' | 'equation'); may raise VerifyTimeout.
Escalate = Callable[[Node, Node, str], bool]

_INEQ = {"<", ">", "<=", ">="}
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORDS.update(
    {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
)
_NUMBER_WORDS.update({"hundred": 100, "thousand": 1000, "million": 1_000_000})


class Judge:
    """Structural comparison of answer trees; scalar leaves are decided exactly, numerically or by `escalate`."""

    def __init__(self, escalate: Escalate, deadline: float | None = None) -> None:
        self.escalate = escalate
        self.deadline = deadline
        self.reason = ""

    def check_time(self) -> None:
        """In-process work is bounded too: past the pair's deadline the comparison stops as a timeout."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise VerifyTimeout("timeout")

    # ------------------------------------------------------------------ entry point
    def match(self, given: str, gold: str, gold_tree: Node | ParseError) -> tuple[bool, str]:
        if given.strip() == gold.strip():
            return True, "identical"
        fg = fast_number(given)
        if fg is not None:
            fr = fast_number(gold)
            if fr is not None:
                return (True, "equal (exact)") if fg == fr else (False, "not equal (exact)")
        cg, cr = clean_latex(given), clean_latex(gold)
        if cg == cr:
            return True, "same after normalisation"
        if _despace(cg) == _despace(cr):
            return True, "same after normalisation"
        labelled = self._named_by_ratio(cg, cr)
        if labelled is not None:
            return labelled
        gold_names = None
        if ";" in cr:
            grouped = _grouped_records(cr)
            if grouped is not None:
                gold_tree, gold_names = grouped
        if isinstance(gold_tree, ParseError):
            same = _text_same(given, gold)
            return same, "same text" if same else "text differs (gold is not a formula)"
        try:
            given_tree: Node | None = parse_cleaned(cg)
        except ParseError as exc:
            given_tree, parse_error = None, exc
        if (given_tree is None or _is_texty(given_tree) or _is_prose(cg)) and _is_number(gold_tree):
            quantity = sentence_quantity(cg)
            if quantity is not None:
                ok, reason = self.match(quantity, gold, gold_tree)
                return ok, f"the quantity stated in the sentence: {reason}"
        if given_tree is None:
            if _is_texty(gold_tree):
                same = _text_same(given, gold)
                return same, "same text" if same else "text differs"
            return False, f"given answer is not a formula ({parse_error})"
        if ";" in cg:
            grouped = _grouped_records(cg, gold_names)
            given_tree = grouped[0] if grouped is not None else given_tree
        self.reason = ""
        ok = self.answers(given_tree, gold_tree, cg, cr)
        return ok, (self.reason or ("equal" if ok else "not equal"))

    def _named_by_ratio(self, cg: str, cr: str) -> tuple[bool, str] | None:
        """`V_1:V_2 = 11:21` names its value by a ratio of names (no formula): compare the values, and the
        names when both answers carry one."""
        g_label, r_label = _RATIO_LABEL_RE.match(cg), _RATIO_LABEL_RE.match(cr)
        if g_label is None and r_label is None:
            return None
        if g_label is not None and r_label is not None and _despace(g_label[1]) != _despace(r_label[1]):
            return False, "different names"
        g_value = g_label[2] if g_label is not None else cg
        r_value = r_label[2] if r_label is not None else cr
        try:
            r_tree: Node | ParseError = parse_cleaned(r_value)
        except ParseError as exc:
            r_tree = exc
        ok, reason = self.match(g_value, r_value, r_tree)
        return ok, f"named value: {reason}"

    # ------------------------------------------------------------------ structure
    def answers(self, g: Node, r: Node, graw: str, rraw: str) -> bool:
        """Whether tree g denotes the gold r. `exact \\approx decimal` commits to the exact value; its decimal
        counts only against a decimal gold (the question asked for a rounded value)."""
        g, g_approx = _split_approx(g)
        r, _ = _split_approx(r)
        if self._answers(g, r, graw, rraw):
            return True
        if g_approx and _is_decimal(r):
            reason = self.reason
            if any(self._gold_scalar(a, r) for a in g_approx):
                self.reason = "the approximation given is the decimal asked for"
                return True
            self.reason = reason
        return False

    def _answers(self, g: Node, r: Node, graw: str, rraw: str) -> bool:
        g, r = _drop_ellipsis(g), _drop_ellipsis(r)
        if r[0] == "choice":
            return self._choice(g, r[1])
        if _is_texty(r) or _is_texty(g) and not _word_number(g):
            same = _text_same(graw, rraw)
            self.reason = "same text" if same else "text differs"
            return same
        g, r = _word_number(g) or g, _word_number(r) or r
        g, r = _scale_matrix(g), _scale_matrix(r)
        if r[0] == "based" or g[0] == "based":
            return self._based(g, r, graw)
        if r[0] == "matrix":
            return self._matrix(g, r)
        r_iv = _intervals(r) if _interval_like(r) else None
        if r_iv is not None:
            g_iv = _intervals(g)
            if g_iv is None:
                self.reason = "gold is a set of reals, given is not"
                return False
            return self._interval_sets(g_iv, r_iv)
        if r[0] == "rel" and all(op == "=" for op in r[2]):
            return self._gold_equation(g, r)
        record = _record(r)
        if record is not None:
            return self._gold_record(g, record)
        g = _strip_assignment(g)
        if r[0] in ("rel", "in", "cap"):
            if g == r:
                return True
            self.reason = "unsupported relation"
            return False
        if r[0] == "tuple":
            return self._gold_tuple(g, r)
        r_vals = self._values(r)
        if len(r_vals) > 1 or r[0] in ("set", "list"):
            g_vals = self._values(g)
            return self._same_set(g_vals, r_vals)
        return self._gold_scalar(g, r_vals[0])

    def _choice(self, g: Node, letter: str) -> bool:
        got = g[1] if g[0] == "choice" else g[1].upper() if g[0] == "s" and len(g[1]) == 1 else None
        self.reason = "same choice" if got == letter else "different choice"
        return got == letter

    def _based(self, g: Node, r: Node, graw: str) -> bool:
        if g[0] == "based" and r[0] == "based":
            ok = int(g[1], g[2]) == int(r[1], r[2])
        elif r[0] == "based":
            digits = _despace(graw).upper()
            if r[2] == 10 or not re.fullmatch(r"[0-9A-Z]+", digits):
                return self._gold_scalar(g, ("n", Fraction(int(r[1], r[2]))))
            try:
                ok = int(digits, r[2]) == int(r[1], r[2])
            except ValueError:
                ok = False
        else:
            return self._gold_scalar(("n", Fraction(int(g[1], g[2]))), r)
        self.reason = "same number in base" if ok else "different number"
        return ok

    def _matrix(self, g: Node, r: Node) -> bool:
        rows = r[1]
        if g[0] == "matrix":
            g_rows = g[1]
            if len(g_rows) != len(rows) or len(g_rows[0]) != len(rows[0]):
                vectors = min(len(g_rows), len(g_rows[0])) == 1 and min(len(rows), len(rows[0])) == 1
                if not vectors or len(g_rows) * len(g_rows[0]) != len(rows) * len(rows[0]):
                    self.reason = "matrix shapes differ"
                    return False
                g_rows = (tuple(c for row in g_rows for c in row),)  # a row vector given for a column
                rows = (tuple(c for row in rows for c in row),)
            pairs = [(a, b) for ga, ra in zip(g_rows, rows, strict=True) for a, b in zip(ga, ra, strict=True)]
        elif g[0] in ("tuple", "list") and (len(rows) == 1 or len(rows[0]) == 1):
            flat = [c for row in rows for c in row]
            if len(g[1]) != len(flat):
                self.reason = "vector lengths differ"
                return False
            pairs = list(zip(g[1], flat, strict=True))
        else:
            self.reason = "gold is a matrix, given is not"
            return False
        ok = all(self._gold_scalar(a, b) for a, b in pairs)
        self.reason = "equal entries" if ok else "entries differ"
        return ok

    def _gold_tuple(self, g: Node, r: Node) -> bool:
        items = r[1]
        if len(items) == 2 and _interval_like(g):
            g_iv = _intervals(g)
            r_iv = _intervals(r)
            if g_iv is not None and r_iv is not None:
                return self._interval_sets(g_iv, r_iv)
        if g[0] == "matrix" and (len(g[1]) == 1 or len(g[1][0]) == 1):
            g_items: tuple = tuple(c for row in g[1] for c in row)
        elif g[0] in ("tuple", "list"):
            g_items = g[1]
        else:
            self.reason = "gold is a tuple, given is not"  # a set {1, 2} is not the ordered pair (1, 2)
            return False
        if len(g_items) != len(items):
            self.reason = "tuple lengths differ"
            return False
        if g[0] == "tuple" and len(items) == 2 and (g[2], g[3]) != (r[2], r[3]):
            if self._increasing(items) and self._increasing(g_items):
                self.reason = "interval ends differ"
                return False
        ok = all(self._item(a, b) for a, b in zip(g_items, items, strict=True))
        self.reason = "equal tuples" if ok else "tuples differ"
        return ok

    def _increasing(self, items: tuple) -> bool:
        try:
            lo, hi = _sort_key(items[0]), _sort_key(items[1])
        except (ev.EvalError, ev.TooBig, ev.NotExact, TypeError):
            return False
        return lo < hi

    def _item(self, g: Node, r: Node) -> bool:
        """Compare two elements of a tuple or set, which may themselves be structured."""
        if r[0] in ("tuple", "matrix", "set", "rel", "choice") or r[0] == "w":
            return self.answers(g, r, "", "") if r[0] != "w" else g == r
        g_vals = self._values(g, top=False)
        r_vals = self._values(r, top=False)
        if len(g_vals) != 1 or len(r_vals) != 1:
            return self._same_set(g_vals, r_vals)
        return self._gold_scalar(g_vals[0], r_vals[0])

    def _gold_equation(self, g: Node, r: Node) -> bool:
        sides = r[1]
        target = _assignment(r)
        if target is not None:
            name, value, plain = target
            if g[0] == "rel" and all(op == "=" for op in g[2]):
                g_assign = _assignment(g)
                if g_assign is not None:
                    if g_assign[0] != name and plain and g_assign[2]:
                        # `x = (y-3)/2` is the line `y = 2x + 3`; `y = 5` is not `x = 5`
                        if len(g[1]) == 2 and len(sides) == 2:
                            return self._equations(g, r)
                        self.reason = "different variable"
                        return False
                    return self._item(g_assign[1], value)
                if len(g[1]) == 2:
                    return self._equations(g, r)
                return self._gold_scalar(g[1][-1], value)
            record = _tuple_record(r)
            if record is not None and g[0] == "list":  # gold `(a, b) = (2, 3)`, given `a = 2, b = 3`
                return self._gold_record(g, record)
            if (
                g[0] in ("rel", "in", "set", "list")
                or g[0] in ("tuple", "matrix")
                and value[0] not in ("tuple", "matrix")
            ):
                self.reason = "gold is an assignment, given is a different kind of answer"
                return False
            return self._item(g, value)
        if len(sides) > 2:
            return self._gold_scalar(_strip_assignment(g), sides[-1])
        if g[0] == "rel" and all(op == "=" for op in g[2]) and len(g[1]) == 2:
            return self._equations(g, r)
        self.reason = "gold is an equation, given is not"
        return False

    def _gold_record(self, g: Node, record: list[tuple[str, Node]]) -> bool:
        """Gold `AB=4, CD=5` (distinct names): named values match by name, bare values by position."""
        g_record = _record(g) or _tuple_record(g)
        if g_record is not None:
            given = dict(g_record)
            if sorted(given) != sorted(name for name, _ in record):
                self.reason = "different names"
                return False
            pairs = [(given[name], value) for name, value in record]
        elif g[0] in ("list", "tuple") and len(g[1]) == len(record):
            pairs = []
            for item, (name, value) in zip(g[1], record, strict=True):
                named = _assignment(item)
                if named is not None and named[0] != name:
                    self.reason = "different names"
                    return False
                pairs.append((named[1] if named is not None else item, value))
        else:
            self.reason = "gold names several values, given is not a list of them"
            return False
        ok = all(self._item(a, b) for a, b in pairs)
        self.reason = "same named values" if ok else "named values differ"
        return ok

    def _equations(self, g: Node, r: Node) -> bool:
        eg = ("+", (g[1][0], ("neg", g[1][1])))
        er = ("+", (r[1][0], ("neg", r[1][1])))
        verdict = _proportional(eg, er)
        if verdict is None:
            verdict = self.escalate(eg, er, "equation")
            self.reason = "equivalent equations (sympy)" if verdict else "different equations (sympy)"
        else:
            self.reason = "equivalent equations" if verdict else "different equations"
        return verdict

    # ------------------------------------------------------------------ sets of values
    def _values(self, node: Node, top: bool = True) -> list[Node]:
        """Solutions listed by an answer: `x=1 or x=2`, `\\{1,2\\}`, `1 \\pm \\sqrt 2`, `x \\in \\{1, 2\\}`.

        A bare top-level tuple `(3, 5)` given for a gold list counts as a list; tuples inside a list stay whole.
        """
        node = _strip_assignment(node)
        if node[0] in ("list", "set") or top and node[0] == "tuple" and not _interval_like(node):
            out: list[Node] = []
            for item in node[1]:
                out += self._values(item, top=False)
            return out
        if node[0] == "in" and node[2][0] in ("set", "list"):
            return self._values(node[2], top=False)
        if node[0] in ("tuple", "matrix", "rel", "in", "union", "choice", "w", "reals", "ellipsis", "cap"):
            return [node]
        try:
            return ev.expand_pm(node)
        except ev.EvalError:
            return [node]

    def _same_set(self, g_vals: list[Node], r_vals: list[Node]) -> bool:
        r_unique = self._dedupe(r_vals)
        g_unique = self._dedupe(g_vals)
        if len(r_unique) != len(g_unique):
            self.reason = f"{len(g_unique)} values given, {len(r_unique)} expected"
            return False
        if len(r_unique) > 8:  # long lists: pair values in numeric order instead of trying every pair
            g_sorted, r_sorted = _numeric_order(g_unique), _numeric_order(r_unique)
            if g_sorted is not None and r_sorted is not None:
                if all(self._item(a, b) for a, b in zip(g_sorted, r_sorted, strict=True)):
                    self.reason = "same set"
                    return True
                if len(r_unique) > MAX_PAIRWISE:
                    self.reason = "sets differ"
                    return False
            elif len(r_unique) > MAX_PAIRWISE:
                self.reason = "too many values to compare"
                return False
        remaining = list(g_unique)
        for rv in r_unique:
            for k, gv in enumerate(remaining):
                self.check_time()
                if self._item(gv, rv):
                    del remaining[k]
                    break
            else:
                self.reason = "sets differ"
                return False
        self.reason = "same set"
        return True

    def _dedupe(self, vals: list[Node]) -> list[Node]:
        out: list[Node] = []
        for v in vals:
            if not any(v == u for u in out):
                out.append(v)
        if len(out) > 1 and len(out) <= 12:
            keep: list[Node] = []
            for v in out:
                if not any(_cheap_equal(v, u) for u in keep):
                    keep.append(v)
            out = keep
        return out

    # ------------------------------------------------------------------ intervals
    def _interval_sets(self, g: list[tuple], r: list[tuple]) -> bool:
        g, r = _merge(g), _merge(r)
        if len(g) != len(r):
            self.reason = "different number of intervals"
            return False
        for (glo, ghi, glc, grc), (rlo, rhi, rlc, rrc) in zip(g, r, strict=True):
            if (glc, grc) != (rlc, rrc) and not (
                (glc == rlc or _inf_sign(rlo) is not None) and (grc == rrc or _inf_sign(rhi) is not None)
            ):
                self.reason = "interval ends differ"
                return False
            if not (self._endpoint(glo, rlo) and self._endpoint(ghi, rhi)):
                self.reason = "interval endpoints differ"
                return False
        self.reason = "same set of reals"
        return True

    def _endpoint(self, g: Node, r: Node) -> bool:
        gs, rs = _inf_sign(g), _inf_sign(r)
        if gs is not None or rs is not None:
            return gs == rs
        return self._scalar(g, r)

    # ------------------------------------------------------------------ scalars
    def _gold_scalar(self, g: Node, r: Node) -> bool:
        """Compare a given answer with one gold value, honouring percent, degrees and units."""
        g = _strip_assignment(g)
        if g[0] in ("list", "set") and len(g[1]) == 1:
            g = g[1][0]
        if g[0] == "list":
            g = _compound_quantity(g) or g
        if g[0] in ("tuple", "set", "list", "matrix", "rel", "in", "union", "choice", "reals", "cap"):
            self.reason = "gold is a single value, given is not"
            return False
        if ev.contains(g, frozenset({"pm"})):
            variants = self._values(g)
            if len(variants) != 1:
                self.reason = "given has ±, gold is a single value"
                return False
            g = variants[0]
        if _is_texty(g):
            self.reason = "given is text"
            return False
        g_core, g_kind, g_unit = _peel(g)
        r_core, r_kind, r_unit = _peel(r)
        gs, rs = _inf_sign(g_core), _inf_sign(r_core)
        if gs is not None or rs is not None:
            self.reason = "same infinity" if gs == rs else "infinity differs"
            return gs == rs
        if g_unit and r_unit and g_unit != r_unit:
            factor = convert_factor(g_unit, r_unit)
            if factor is not None and factor != 1:
                g_core = ("*", (g_core, ("n", factor)))
        candidates = [g_core]
        if r_kind == "pct" and g_kind != "pct":
            candidates.append(("*", (g_core, ("n", Fraction(100)))))
        elif g_kind == "pct" and r_kind != "pct":
            candidates.append(("/", g_core, ("n", Fraction(100))))
        elif r_kind == "deg" and g_kind != "deg" and _radians(g_core):
            candidates = [("/", ("*", (g_core, ("n", Fraction(180)))), ("pi",))]
        elif g_kind == "deg" and r_kind != "deg" and _radians(r_core):
            candidates = [("/", ("*", (g_core, ("pi",))), ("n", Fraction(180)))]
        return any(self._scalar(cand, r_core) for cand in candidates)

    def _scalar(self, g: Node, r: Node) -> bool:
        self.check_time()
        verdict, how = scalar_verdict(g, r)
        if verdict is None:
            verdict = self.escalate(g, r, "value")
            how = "sympy"
        self.reason = f"equal ({how})" if verdict else f"not equal ({how})"
        return verdict


# ----------------------------------------------------------------------------------------------------------------
# Scalar decisions without sympy


_NON_SCALAR = frozenset(
    {"tuple", "set", "list", "matrix", "rel", "in", "union", "choice", "w", "reals", "cap", "ellipsis"}
)


def scalar_verdict(g: Node, r: Node) -> tuple[bool | None, str]:
    """(True/False, how) when exact or provably safe numeric evaluation decides, (None, why) otherwise."""
    if g == r:
        return True, "same tree"
    if ev.contains(g, _NON_SCALAR) or ev.contains(r, _NON_SCALAR):
        return False, "not a scalar"
    syms = ev.symbols(g) | ev.symbols(r)
    if not syms:
        try:
            return ev.exact(g) == ev.exact(r), "exact"
        except ev.TooBig:
            return None, "too big"
        except ev.EvalError:
            return False, "undefined"
        except ev.NotExact:
            pass
        ctx = ev.mp_context(60)
        safety = ev.Safety()
        try:
            a, b = ev.numeric(g, ctx, safety), ev.numeric(r, ctx, safety)
        except ev.TooBig:
            return None, "too big"
        except ev.EvalError:
            return None, "numeric failure"
        except (ValueError, ZeroDivisionError, OverflowError):
            return None, "numeric failure"
        if not ev.close(ctx, a, b):
            return False, "numeric"
        if safety.safe and a != 0 and b != 0:
            return True, "numeric"
        return None, "numeric agreement needs proof"
    return _identity(g, r, sorted(syms))


def _random_env(rng: random.Random, names: list[str], signed: bool = False) -> dict[str, Fraction]:
    sign = (lambda: rng.choice((-1, 1))) if signed else (lambda: 1)
    return {n: sign() * Fraction(rng.randint(2, 10**6), rng.choice((1, 3, 7, 11, 13))) for n in names}


def _identity(g: Node, r: Node, names: list[str]) -> tuple[bool | None, str]:
    """Random-point identity test; `|x|` and `x` agree on positive points, so those are also tried signed."""
    if ev.contains(g, _BIG_OPERATOR) or ev.contains(r, _BIG_OPERATOR):
        return _counts_differ(g, r, names) or (None, "sum with symbolic limits")
    verdict = _identity_at(g, r, names, signed=False)
    if verdict[0] is True and (ev.contains(g, _SIGN_SENSITIVE) or ev.contains(r, _SIGN_SENSITIVE)):
        return _identity_at(g, r, names, signed=True)
    return verdict


_SIGN_SENSITIVE = frozenset({"abs"})
_BIG_OPERATOR = frozenset({"bigop"})


def _counts_differ(g: Node, r: Node, names: list[str]) -> tuple[bool, str] | None:
    """A sum up to `n` is a function of a count: answers that differ at a point n = 4..9 (every symbol set to
    it) differ. A sound reject; agreement at a few counts proves nothing, so equality is left to sympy."""
    for count in range(4, 10):
        env = {name: Fraction(count) for name in names}
        try:
            a = ev.exact(g, env)
            b = ev.exact(r, env)
        except (ev.EvalError, ev.NotExact, ev.TooBig):
            continue
        if a != b:
            return False, "differ at a count"
    return None


def _identity_at(g: Node, r: Node, names: list[str], signed: bool) -> tuple[bool | None, str]:
    """Polynomial-identity style test at random rational points (exact), or numeric at random points."""
    rng = random.Random(0x5EED + signed)
    exact_hits = 0
    numeric_hits = 0
    safe = True
    for _ in range(8):
        env = _random_env(rng, names, signed)
        try:
            if ev.exact(g, env) != ev.exact(r, env):
                return False, "differ at a point"
            exact_hits += 1
            if exact_hits >= 3:
                return True, "identity at random points"
            continue
        except ev.EvalError:
            continue
        except ev.TooBig:
            return None, "too big"
        except ev.NotExact:
            pass
        ctx = ev.mp_context(60)
        safety = ev.Safety()
        menv = {k: ctx.mpf(v.numerator) / v.denominator for k, v in env.items()}
        try:
            a, b = ev.numeric(g, ctx, safety, menv), ev.numeric(r, ctx, safety, menv)
        except ev.TooBig:
            return None, "too big"
        except (ev.EvalError, ValueError, ZeroDivisionError, OverflowError):
            continue
        if not ev.close(ctx, a, b):
            return False, "differ at a point"
        safe = safe and safety.safe and a != 0
        numeric_hits += 1
        if numeric_hits + exact_hits >= 4:
            return (True, "agree at random points") if safe else (None, "agreement needs proof")
    return None, "could not evaluate"


def _proportional(e1: Node, e2: Node) -> bool | None:
    """Whether e1 = c * e2 for a nonzero constant c (same equation), from random points; None if unsure."""
    names = sorted(ev.symbols(e1) | ev.symbols(e2))
    if not names:
        return None
    rng = random.Random(0xE0)
    ratio = None
    hits = 0
    for _ in range(10):
        env = _random_env(rng, names)
        try:
            a, b = ev.exact(e1, env), ev.exact(e2, env)
        except (ev.NotExact, ev.TooBig):
            return None
        except ev.EvalError:
            continue
        if (a == 0) != (b == 0):
            return False
        if b == 0:
            continue
        q = ev._mul(a, ev._inv(b))
        if ratio is None:
            ratio = q
        elif q != ratio:
            return False
        hits += 1
        if hits >= 4:
            return True
    return None


MAX_PAIRWISE = 60


def _numeric_order(vals: list[Node]) -> list[Node] | None:
    """Values sorted by (real, imaginary) part, or None when one has no numeric value."""
    ctx = ev.mp_context(30)
    keyed = []
    for v in vals:
        core = _peel(v)[0] if _scalar_like(v) else None
        if core is None or ev.symbols(core):
            return None
        try:
            x = ev.numeric(core, ctx, ev.Safety())
        except (ev.EvalError, ev.TooBig, ValueError, ZeroDivisionError, OverflowError):
            return None
        keyed.append(((float(ctx.re(x)), float(ctx.im(x))), v))
    keyed.sort(key=lambda kv: kv[0])
    return [v for _, v in keyed]


def _cheap_equal(a: Node, b: Node) -> bool:
    verdict, _ = scalar_verdict(a, b) if _scalar_like(a) and _scalar_like(b) else (a == b, "")
    return bool(verdict)


# ----------------------------------------------------------------------------------------------------------------
# Tree helpers


_FAST_NUMBER_RE = re.compile(r"^\s*\$?\s*([+-]?)\s*([1-9]\d{0,2}(?:,\d{3})+|\d*)(\.\d+)?\s*\$?\s*$")
_FAST_FRACTION_RE = re.compile(
    r"^\s*\$?\s*(-?)\s*(?:\\[dt]?frac\{(\d+)\}\{(\d+)\}|(\d+)\s*/\s*(\d+))\s*\$?\s*$"
)


def fast_number(s: str) -> Fraction | None:
    """Exact value of a plain number (`-1,000.50`, `$72$`, `\\frac{3}{4}`, `3/4`) without any parsing."""
    if len(s) > 40:
        return None
    m = _FAST_NUMBER_RE.match(s)
    if m:
        whole, frac = m.group(2), m.group(3)
        if not whole and not frac:
            return None
        value = Fraction((whole or "0").replace(",", "") + (frac or ""))
        return -value if m.group(1) == "-" else value
    m = _FAST_FRACTION_RE.match(s)
    if m:
        num, den = (m.group(2), m.group(3)) if m.group(2) else (m.group(4), m.group(5))
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return -value if m.group(1) else value
    return None


_TEXT_ALIASES = {"dne": "doesnotexist", "doesntexist": "doesnotexist", "t": "true", "f": "false"}


def _text_same(given: str, gold: str) -> bool:
    """Same words and digits, and the same operators in the same order (`1+\\frac1e` is not `1-\\frac1e`)."""
    a, b = text_key(given), text_key(gold)
    if not b or _TEXT_ALIASES.get(a, a) != _TEXT_ALIASES.get(b, b):
        return False
    return formula_marks(given) == formula_marks(gold)


def _despace(s: str) -> str:
    return re.sub(r"(?<!\d) | (?!\d)", "", s)


_NAME = r"[A-Za-z](?:_\{?\w+\}?)?'?"
# `A:B = 1`, `V_1 : V_2 = 11:21`: a value named by a ratio of names.
_RATIO_LABEL_RE = re.compile(r"^\s*(" + _NAME + r"(?:\s*:\s*" + _NAME + r")+)\s*=\s*(\S.*)$")


def _record(node: Node) -> list[tuple[str, Node]] | None:
    """(name, value) pairs of a list of assignments with distinct names (`AB=4, CD=5`), else None."""
    if node[0] != "list" or len(node[1]) < 2:
        return None
    out = []
    for item in node[1]:
        named = _assignment(item)
        if named is None:
            return None
        out.append((named[0], named[1]))
    if len({name for name, _ in out}) != len(out):
        return None  # `x=1, x=2` lists solutions of one variable
    return out


def _tuple_record(node: Node) -> list[tuple[str, Node]] | None:
    """`(x, y) = (3, 4)` as the record x=3, y=4."""
    named = _assignment(node)
    if named is None or "," not in named[0] or named[1][0] != "tuple":
        return None
    names = named[0].split(",")
    return list(zip(names, named[1][1], strict=True)) if len(names) == len(named[1][1]) else None


def _top_level_split(s: str, sep: str) -> list[str]:
    """`s` split at `sep` outside brackets (`(1;2); 3` -> `(1;2)`, ` 3`)."""
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(s[start:k])
            start = k + 1
    parts.append(s[start:])
    return parts


def _grouped_records(cleaned: str, order: list[str] | None = None) -> tuple[Node, list[str]] | None:
    """`p=5,q=2; p=7,q=2`: groups split by `;`, each naming the same values -> the list of tuples (5,2), (7,2).

    The tuples follow `order` (the gold's names) when given, else the first group's order; returns the tree
    and the names in that order."""
    groups = _top_level_split(cleaned, ";")
    if len(groups) < 2 or "=" not in cleaned:
        return None
    records = []
    for group in groups:
        try:
            record = _record(parse_cleaned(group.strip()))
        except ParseError:
            return None
        if record is None:
            return None
        records.append(dict(record))
    names = order or list(records[0])
    if any(sorted(r) != sorted(names) for r in records):
        return None
    return ("list", tuple(("tuple", tuple(r[n] for n in names), "(", ")") for r in records)), names


def _is_number(node: Node | ParseError) -> bool:
    """A gold that is one number (possibly with a unit, percent or degrees)."""
    if isinstance(node, ParseError) or not _scalar_like(node) or _is_texty(node):
        return False
    core = _peel(node)[0]
    return not ev.symbols(core) and not ev.contains(core, frozenset({"pm", "based"}))


_QUANTITY_RE = re.compile(r"-?\d+(?:[.,]\d+)*(?:\s*/\s*\d+)?")
# A sentence that negates, offers alternatives or bounds its number ("at least 5") does not state the quantity.
_NEGATION_RE = re.compile(
    r"\b(?:not|no|never|none|neither|nor|except|without|cannot|isn't|aren't|wasn't|weren't|doesn't|didn't)\b|"
    r"n't\b|\bor\b|\b(?:at\s+(?:least|most)|(?:more|less|fewer|greater|larger|smaller|other)\s+than|up\s+to|over|"
    r"under|above|below|exceeds?|nearly|almost|within|between|except|besides|plus|minus|times|impossible|"
    r"undefined|invalid|incorrect|wrong|false|fails?|instead|if|unless)\b",
    re.I,
)
_PROSE_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")


def _is_prose(cleaned: str) -> bool:
    """Three or more words (not commands): a sentence, even when the parser can read it as a product."""
    return len(_PROSE_WORD_RE.findall(cleaned)) >= 3


def sentence_quantity(cleaned: str) -> str | None:
    """The one quantity a sentence states ("Jane started growing her tree 3 hours ago" -> `3 hours`), else None.

    Used only against a numeric gold. Two quantities, a negation or an alternative ("or") give None: which
    number is the answer would be a guess.
    """
    words = re.findall(r"[A-Za-z']+", cleaned)
    if len(words) < 2 or _NEGATION_RE.search(cleaned) or re.search(r"\\[a-zA-Z]", cleaned):
        return None
    numbers = list(_QUANTITY_RE.finditer(cleaned))
    spelled = [w for w in words if w.lower() in _NUMBER_WORDS]
    if len(numbers) + len(spelled) != 1:
        return None
    if not numbers:
        return spelled[0].lower()
    m = numbers[0]
    if m.start() and (cleaned[m.start() - 1].isalnum() or cleaned[m.start() - 1] in "^_."):
        return None  # part of a name or an exponent (`x2`, `10^3`)
    unit = re.match(r"\s*([A-Za-z]+)", cleaned[m.end() :])
    if unit and (unit_info(unit[1]) is not None or unit[1].lower() in ("percent", "degrees", "degree")):
        return f"{m.group(0)} {unit[1]}"
    return m.group(0)


def _split_approx(node: Node) -> tuple[Node, tuple[Node, ...]]:
    """`\\frac13 \\approx 0.333` -> (the exact value, its approximations); `x \\approx 0.33` names a value (=)."""
    if node[0] in ("list", "set", "tuple"):
        items = tuple(_split_approx(i)[0] for i in node[1])
        return (node[0], items, *node[2:]), ()
    if node[0] != "rel" or "~" not in node[2]:
        return node, ()
    sides, ops = node[1], node[2]
    k = ops.index("~")
    as_equation = ("rel", sides, tuple("=" if op == "~" else op for op in ops))
    if any(op not in ("=", "~") for op in ops) or _label(sides[k]) is not None and k == 0:
        return as_equation, ()
    head = sides[0] if k == 0 else ("rel", sides[: k + 1], ops[:k])
    return head, tuple(sides[k + 1 :])


def _is_decimal(node: Node) -> bool:
    """A decimal literal such as `0.333` (the parser keeps its number of places)."""
    core = _peel(node)[0]
    core = core[1] if core[0] == "neg" else core
    return core[0] == "n" and len(core) == 3


def _scalar_like(node: Node) -> bool:
    return node[0] not in (
        "tuple",
        "set",
        "list",
        "matrix",
        "rel",
        "in",
        "union",
        "choice",
        "w",
        "reals",
        "cap",
    )


def _drop_ellipsis(node: Node) -> Node:
    if node[0] == "list":
        items = tuple(i for i in node[1] if i[0] != "ellipsis")
        return items[0] if len(items) == 1 else ("list", items)
    return node


def _is_symbol(node: Node) -> bool:
    return node[0] in ("s", "w")


def _is_texty(node: Node) -> bool:
    """Free-text answers (`\\text{Evelyn}`, `even`): words outside units and equation labels."""
    tag = node[0]
    if tag == "w":
        return _word_number(node) is None
    if tag in ("list", "set"):
        return any(_is_texty(i) for i in node[1])
    if tag == "*":
        return any(_is_texty(f) for f in node[1])
    return False


def _word_number(node: Node) -> Node | None:
    if node[0] == "w" and node[1] in _NUMBER_WORDS:
        return ("n", Fraction(_NUMBER_WORDS[node[1]]))
    return None


_FUNCTION_NAMES = frozenset("f g h p q r F G H P Q R".split())


def _assignment(node: Node) -> tuple[str, Node, bool] | None:
    """(name, value, name_is_a_variable) of `x = 5`, `5 = x`, `x = 2+3 = 5`, `(x, y) = (1, 2)`, `f(x) = 2x+1`."""
    if node[0] != "rel" or any(op != "=" for op in node[2]):
        return None
    sides = node[1]
    first, last = sides[0], sides[-1]
    label = _label(first)
    if label is not None:
        name, plain = label
        if first[0] != "s" and plain and ev.symbols(first) & ev.symbols(last):
            return None  # `AB = 2A` relates the points, it does not name a value
        if name not in ev.symbols(last) or not plain:
            return name, last, plain
        return None
    label = _label(last)
    if label is not None and len(sides) == 2 and label[0] not in ev.symbols(first):
        return label[0], first, label[1]
    return None


def _label(node: Node) -> tuple[str, bool] | None:
    """Name of an equation's left side when it only names the answer: `x`, `N`, `\text{Area}`, `(x,y)`, `f(x)`."""
    if node[0] == "s":
        return node[1], True
    if node[0] == "w":
        return node[1], False
    if node[0] == "tuple" and all(i[0] == "s" for i in node[1]):
        return ",".join(i[1] for i in node[1]), True
    if node[0] == "*" and len(node[1]) == 2 and node[1][0][0] == "s" and node[1][0][1] in _FUNCTION_NAMES:
        if node[1][1][0] in ("s", "tuple") and ev.symbols(node[1][1]):
            return f"{node[1][0][1]}(...)", False
    segment = _segment_name(node)
    if segment is not None:
        return segment, True
    if node[0] == "abs":
        inner = _segment_name(node[1]) or (node[1][1] if node[1][0] == "s" else None)
        if inner is not None:
            return f"|{inner}|", True
    return None


def _segment_name(node: Node) -> str | None:
    """`AB`, `ABC` (points are capital letters): a segment, angle or area named by its points."""
    if (
        node[0] == "*"
        and len(node[1]) >= 2
        and all(f[0] == "s" and re.fullmatch(r"[A-Z]'?", f[1]) for f in node[1])
    ):
        return "".join(f[1] for f in node[1])
    return None


def _strip_assignment(node: Node) -> Node:
    """`x = 5` -> `5`; `2 + 3 = 5` -> `5`; other nodes unchanged."""
    if node[0] == "rel" and all(op == "=" for op in node[2]):
        a = _assignment(node)
        if a is not None:
            return a[1]
        sides = node[1]
        numeric_sides = [s for s in sides if not ev.symbols(s)]
        if len(numeric_sides) == len(sides) or len(numeric_sides) >= 1 and len(sides) > 2:
            return numeric_sides[-1]
    return node


_INVERSE_TRIG = frozenset({"arcsin", "arccos", "arctan", "arccot", "arcsec", "arccsc"})


def _radians(node: Node) -> bool:
    """An angle written in radians: a multiple of pi, or an inverse trigonometric value."""
    if ev.contains(node, frozenset({"pi"})):
        return True
    return node[0] == "f" and node[1] in _INVERSE_TRIG


def _scale_matrix(node: Node) -> Node:
    """`2\\begin{pmatrix}1\\\\2\\end{pmatrix}` -> the matrix of doubled entries; other nodes unchanged."""
    if node[0] == "neg" and node[1][0] == "matrix":
        node = ("*", (("n", Fraction(-1)), node[1]))
    if node[0] != "*":
        return node
    mats = [f for f in node[1] if f[0] == "matrix"]
    if len(mats) != 1 or any(ev.contains(f, _NON_SCALAR) for f in node[1] if f[0] != "matrix"):
        return node
    scalars = tuple(f for f in node[1] if f[0] != "matrix")
    return ("matrix", tuple(tuple(("*", (*scalars, c)) for c in row) for row in mats[0][1]))


def _peel(node: Node) -> tuple[Node, str | None, str | None]:
    """Split off percent / degree / unit wrappers: (core, 'pct'|'deg'|None, unit phrase|None)."""
    kind = None
    unit = None
    neg = False
    for _ in range(6):
        tag = node[0]
        if tag == "neg" and node[1][0] in ("pct", "deg", "unit"):
            neg = not neg
            node = node[1]
        elif tag == "pct":
            kind = "pct"
            node = node[1]
        elif tag == "deg":
            kind = "deg"
            node = node[1]
        elif tag == "unit":
            unit = node[2] if unit is None else unit
            node = node[1]
        elif tag == "*" and any(f[0] == "deg" for f in node[1]) and kind is None:
            # `\frac{990}{7}^\circ` parsed as a product ending in degrees
            node = ("*", tuple(f[1] if f[0] == "deg" else f for f in node[1]))
            kind = "deg"
        else:
            break
    return (("neg", node) if neg else node), kind, unit


def _inf_sign(node: Node) -> int | None:
    if node[0] == "inf":
        return 1
    if node[0] == "neg" and node[1][0] == "inf":
        return -1
    if node[0] == "+" and len(node[1]) == 1:
        return _inf_sign(node[1][0])
    return None


def _interval_like(node: Node) -> bool:
    """Answers that can only mean a set of reals (mixed brackets, infinity, unions, inequalities, x in S)."""
    tag = node[0]
    if tag in ("union", "reals"):
        return True
    if tag == "tuple" and len(node[1]) == 2:
        return (node[2], node[3]) in (("(", "]"), ("[", ")")) or any(
            _inf_sign(i) is not None for i in node[1]
        )
    if tag == "in":
        return node[2][0] in ("tuple", "union", "reals")
    if tag == "rel":
        return all(op in _INEQ for op in node[2]) or node[2] == ("!=",)
    if tag == "list":
        return all(i[0] == "rel" and all(op in _INEQ for op in i[2]) for i in node[1])
    if tag == "cap":
        return _interval_like(node[1]) and _interval_like(node[2])
    return False


_NEG_INF: Node = ("neg", ("inf",))
_POS_INF: Node = ("inf",)


def _intervals(node: Node) -> list[tuple] | None:
    """Intervals (lo, hi, lo_closed, hi_closed) of an interval-like answer, else None."""
    tag = node[0]
    if tag == "tuple" and len(node[1]) == 2:
        return [(node[1][0], node[1][1], node[2] == "[", node[3] == "]")]
    if tag == "reals":
        return [(_NEG_INF, _POS_INF, False, False)]
    if tag == "set":  # a finite set of points, e.g. `\{-1\} \cup [0,7)`
        if any(not _scalar_like(i) for i in node[1]):
            return None
        return [(i, i, True, True) for i in node[1]]
    if tag == "union":
        out: list[tuple] = []
        for part in node[1]:
            sub = _intervals(part)
            if sub is None:
                return None
            out += sub
        return out
    if tag == "in":
        return _intervals(node[2])
    if tag == "cap":
        a, b = _intervals(node[1]), _intervals(node[2])
        return None if a is None or b is None else _intersect(a, b)
    if tag == "rel":
        return _inequality(node)
    if tag == "list":
        out = []
        for item in node[1]:
            sub = _intervals(item) if item[0] == "rel" else None
            if sub is None:
                return None
            out += sub
        return out
    return None


def _abs_inequality(node: Node) -> list[tuple] | None:
    """`|x - c| < a` -> (c-a, c+a); `|x| >= a` -> (-inf, -a] U [a, inf)."""
    sides, ops = node[1], node[2]
    if len(sides) != 2 or ops[0] not in _INEQ:
        return None
    (lhs, rhs), op = sides, ops[0]
    if lhs[0] != "abs":
        lhs, rhs = rhs, lhs
        op = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}[op]
    if lhs[0] != "abs" or ev.symbols(rhs):
        return None
    inner = lhs[1]
    if inner[0] == "s":
        center: Node = ("n", Fraction(0))
    elif inner[0] == "+" and len(inner[1]) == 2 and inner[1][0][0] == "s" and not ev.symbols(inner[1][1]):
        center = ("neg", inner[1][1])
    else:
        return None
    lo, hi = ("+", (center, ("neg", rhs))), ("+", (center, rhs))
    closed = op in ("<=", ">=")
    if op in ("<", "<="):
        return [(lo, hi, closed, closed)]
    return [(_NEG_INF, lo, False, closed), (hi, _POS_INF, closed, False)]


def _inequality(node: Node) -> list[tuple] | None:
    sides, ops = node[1], node[2]
    if any(s[0] == "abs" for s in sides):
        return _abs_inequality(node)
    if ops == ("!=",) and _is_symbol(sides[0]):
        v = sides[1]
        return [(_NEG_INF, v, False, False), (v, _POS_INF, False, False)]
    if not all(op in _INEQ for op in ops):
        return None
    var_positions = [k for k, s in enumerate(sides) if _is_symbol(s) or _is_function_value(s)]
    if len(var_positions) != 1:
        solved = _solve_linear_inequality(sides, ops)
        return None if solved is None else _inequality(solved)
    k = var_positions[0]
    lo, hi, lc, hc = _NEG_INF, _POS_INF, False, False
    # normalise to "<" direction
    if all(op in ("<", "<=") for op in ops):
        if k > 0:
            lo, lc = sides[k - 1], ops[k - 1] == "<="
        if k < len(sides) - 1:
            hi, hc = sides[k + 1], ops[k] == "<="
    elif all(op in (">", ">=") for op in ops):
        if k > 0:
            hi, hc = sides[k - 1], ops[k - 1] == ">="
        if k < len(sides) - 1:
            lo, lc = sides[k + 1], ops[k] == ">="
    else:
        return None
    return [(lo, hi, lc, hc)]


def _is_function_value(node: Node) -> bool:
    """`f(x)` in `0 < f(x) < 1`: the range of a function is a set of reals like that of a variable."""
    return node[0] == "*" and _label(node) is not None and _label(node)[0].endswith("(...)")


_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}


def _solve_linear_inequality(sides: tuple, ops: tuple) -> Node | None:
    """`-x > -1` -> `x < 1`; `-1 < 2x + 1 \\le 5` -> `-1 < x \\le 2`: one side linear in one variable, the others
    numbers. The coefficients are exact rationals; linearity is checked at random rational points."""
    varying = [k for k, side in enumerate(sides) if ev.symbols(side)]
    if len(varying) != 1:
        return None
    k = varying[0]
    names = ev.symbols(sides[k])
    if len(names) != 1:
        return None
    (name,) = names
    expr = sides[k]
    try:
        b = ev.exact(expr, {name: Fraction(0)})
        a = ev.exact(expr, {name: Fraction(1)}) - b
        if isinstance(a, ev.QI) or isinstance(b, ev.QI) or a == 0:
            return None
        rng = random.Random(0x11E)
        for _ in range(3):
            t = Fraction(rng.randint(-(10**6), 10**6), rng.choice((1, 3, 7, 11)))
            if ev.exact(expr, {name: t}) != a * t + b:
                return None
    except (ev.EvalError, ev.NotExact, ev.TooBig, TypeError):
        return None
    new_sides = tuple(
        ("s", name) if j == k else ("/", ("+", (side, ("n", -b))), ("n", a)) for j, side in enumerate(sides)
    )
    new_ops = tuple(_FLIP[op] for op in ops) if a < 0 else ops
    return ("rel", new_sides, new_ops)


def _sort_key(node: Node) -> float:
    s = _inf_sign(node)
    if s is not None:
        return float(s) * float("inf")
    ctx = ev.mp_context(30)
    v = ev.numeric(node, ctx, ev.Safety())
    if ctx.im(v) != 0:
        raise ev.EvalError("complex endpoint")
    return float(ctx.re(v))


def _merge(ivs: list[tuple]) -> list[tuple]:
    """Sort intervals by their left end and merge touching ones (`(-inf,2] U (2,5)` -> `(-inf,5)`)."""
    try:
        keyed = sorted(ivs, key=lambda iv: (_sort_key(iv[0]), _sort_key(iv[1])))
    except (ev.EvalError, ev.TooBig, ValueError, OverflowError, TypeError):
        return ivs
    out: list[tuple] = []
    for iv in keyed:
        if out:
            lo, hi, lc, hc = out[-1]
            try:
                touching = _sort_key(hi) == _sort_key(iv[0]) and (hc or iv[2])
                overlapping = _sort_key(hi) > _sort_key(iv[0])
            except (ev.EvalError, ev.TooBig, ValueError, OverflowError):
                touching = overlapping = False
            if touching or overlapping:
                if _sort_key(iv[1]) > _sort_key(hi) or _sort_key(iv[1]) == _sort_key(hi) and iv[3]:
                    out[-1] = (lo, iv[1], lc, iv[3])
                continue
        out.append(iv)
    return out


def _intersect(a: list[tuple], b: list[tuple]) -> list[tuple] | None:
    """Intersection of two unions of intervals (endpoints must be numeric)."""
    out: list[tuple] = []
    try:
        for alo, ahi, alc, ahc in a:
            for blo, bhi, blc, bhc in b:
                ka, kb = _sort_key(alo), _sort_key(blo)
                lo, lc = (alo, alc) if ka > kb else (blo, blc) if kb > ka else (alo, alc and blc)
                ka, kb = _sort_key(ahi), _sort_key(bhi)
                hi, hc = (ahi, ahc) if ka < kb else (bhi, bhc) if kb < ka else (ahi, ahc and bhc)
                klo, khi = _sort_key(lo), _sort_key(hi)
                if klo < khi or klo == khi and lc and hc:
                    out.append((lo, hi, lc, hc))
    except (ev.EvalError, ev.TooBig, ValueError, OverflowError, TypeError):
        return None
    return out


def _compound_quantity(node: Node) -> Node | None:
    """`3 hours and 20 minutes` -> 200 minutes-worth in the first unit; None unless all parts convert."""
    items = node[1]
    if len(items) < 2 or any(i[0] != "unit" for i in items):
        return None
    first = items[0][2]
    terms = []
    for item in items:
        factor = convert_factor(item[2], first) if item[2] != first else Fraction(1)
        if factor is None:
            return None
        terms.append(("*", (item[1], ("n", factor))))
    return ("unit", ("+", tuple(terms)), first)
