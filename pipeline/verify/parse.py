"""A small LaTeX / plain-math parser for final answers, producing a light tuple tree (no sympy).

The tree is cheap to build, hashable and picklable, so gold answers can be parsed once and cached, most
comparisons are decided on it directly (exact rationals, random-point identity checks), and only the hard
remainder is converted to sympy inside the sandboxed worker.

Nodes (tuples, tag first):
  ('n', Fraction)  ('s', name)  ('w', word)  ('pi',)  ('e',)  ('i',)  ('inf',)
  ('+', (terms...))  ('*', (factors...))  ('neg', x)  ('/', a, b)  ('^', a, b)  ('!', x)
  ('sqrt', x, index|None)  ('f', name, x)  ('log', x, base|None)  ('abs', x)  ('binom', n, k)
  ('pm', a|None, b)  ('pct', x)  ('deg', x)  ('unit', x, words)  ('based', digits, base)
  ('tuple', (items...), open, close)  ('set', (items...))  ('list', (items...))
  ('union', (parts...))  ('rel', (sides...), (ops...))  ('in', x, setexpr)  ('matrix', ((cells...)...))
  ('reals',)  ('choice', letter)
  ('bigop', 'sum'|'prod', index, lo, hi, body): the index is renamed `@<depth>` so that sums differing only in
  the name of their index are the same tree
"""

from __future__ import annotations

import re
from fractions import Fraction

from .normalize import clean_latex
from .units import DEGREE_WORDS, PERCENT_WORDS, SHORT_UNIT_WORDS, unit_info

Node = tuple


class ParseError(ValueError):
    """The answer is not a formula this parser understands (callers fall back to text comparison)."""


FUNCS = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan arccot arcsec arccsc sinh cosh tanh coth "
    "ln log lg exp sqrt det floor ceil gcd lcm abs".split()
)
_INVERSE_TRIG = {"sin": "arcsin", "cos": "arccos", "tan": "arctan", "cot": "arccot"}
# `\approx` is kept apart from `=` ("~"): in `\frac13 \approx 0.333` the exact value is the one committed to.
_RELOPS = {"=": "=", "<": "<", ">": ">", "le": "<=", "ge": ">=", "ne": "!=", "approx": "~", "in": "in"}
_BIG_OPERATORS = frozenset({"sum", "prod"})
_CONNECTIVES = frozenset({"and", "or"})
_SYMBOL_WORDS = frozenset({"xyz", "abc", "xy", "ab"})
_GREEK = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi rho sigma "
    "tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Phi Psi Omega".split()
)
_MATRIX_ENVS = frozenset(
    {"pmatrix", "bmatrix", "matrix", "vmatrix", "Bmatrix", "Vmatrix", "smallmatrix", "array"}
)
MAX_TOKENS = 2000
MAX_DIGITS = 1000
MAX_DEPTH = 60

# --------------------------------------------------------------------------------------------------------------
# Tokens: (kind, value, space_before). Kinds: num, id, cmd, op, begin, end, based.

_NUM_RE = re.compile(r"(\d+\.?\d*|\.\d+)(?:[eE]([+-]?\d+)(?![\d.]))?")
_REPEAT_RE = re.compile(r"\\(?:overline|bar|dot)\s*\{(\d+)\}|\\(?:overline|bar|dot)\s*(\d)|\((\d+)\)")
_CMD_RE = re.compile(r"\\([a-zA-Z]+|.)")
_BASED_RE = re.compile(r"(?<![A-Za-z0-9_.])([0-9A-Z]+)_\{?\s*(\d{1,2})\s*\}?(?![0-9])")
_MIXED_PLAIN_RE = re.compile(r"(?<![\d.\w])(\d+)\s+(\d+)\s*/\s*(\d+)(?![\d.])")
# Digit groups: a grouped number never starts with 0 (`0,111` is the list 0, 111; a comma is never a decimal point).
_SPACE_THOUSANDS_RE = re.compile(r"(?<![\d.,])[1-9]\d{0,2}(?: \d{3})+(?![\d,]|\.\d| ?/)")
_THOUSANDS_RE = re.compile(r"[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?(?![\d,]|\.\d)")
_BEGIN_RE = re.compile(r"\\begin\s*\{\s*([a-zA-Z*]+)\s*\}")
_END_RE = re.compile(r"\\end\s*\{\s*([a-zA-Z*]+)\s*\}")


def _mixed_sub(m: re.Match[str]) -> str:
    whole, num, den = m.group(1), m.group(2), m.group(3)
    return m.group(0) if int(num) >= int(den) else f"{whole}\\frac{{{num}}}{{{den}}}"


def _digit_value(ch: str) -> int:
    return int(ch) if ch.isdigit() else ord(ch) - ord("A") + 10


def _based_sub(m: re.Match[str]) -> str:
    digits, base = m.group(1), int(m.group(2))
    if not 2 <= base <= 36 or not any(c.isdigit() for c in digits) and base <= 10:
        return m.group(0)
    if all(_digit_value(c) < base for c in digits):
        return f"\\based{{{digits}}}{{{base}}}"
    return m.group(0)


def _repeating(prefix: str, period: str) -> Fraction:
    """Exact value of a decimal `prefix` followed by `period` repeated forever (prefix has a '.')."""
    whole, _, frac = prefix.partition(".")
    base = Fraction(int(whole or "0")) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
    return base + Fraction(int(period), (10 ** len(period) - 1) * 10 ** len(frac))


def _period_of(digits: str) -> tuple[str, str] | None:
    """Split the fractional digits of `0.1666...` into (non-repeating, repeating) if a period shows twice."""
    for size in range(1, len(digits) // 2 + 1):
        period = digits[-size:]
        reps = 1
        while digits[: len(digits) - size * reps].endswith(period):
            reps += 1
        if reps >= 2 and (reps >= 3 or size > 1 or len(digits) <= 3):
            head = digits[: len(digits) - size * reps]
            return head, period
    if len(digits) == 1:
        return "", digits
    return None


def tokenize(s: str) -> list[tuple[str, object, bool]]:
    """Split a cleaned answer into tokens; raises ParseError on characters outside the answer language."""
    s = _BASED_RE.sub(_based_sub, s)
    s = _MIXED_PLAIN_RE.sub(_mixed_sub, s)
    s = _SPACE_THOUSANDS_RE.sub(lambda m: m.group(0).replace(" ", ""), s)
    toks: list[tuple[str, object, bool]] = []
    i, n, depth = 0, len(s), 0
    space = False
    while i < n:
        c = s[i]
        if c.isspace():
            space = True
            i += 1
            continue
        if c.isdigit() or (c == "." and i + 1 < n and s[i + 1].isdigit()):
            if depth == 0:
                m = _THOUSANDS_RE.match(s, i)
                if m and (i == 0 or not s[i - 1].isdigit()):
                    toks.append(("num", Fraction(m.group(0).replace(",", "")), space))
                    i, space = m.end(), False
                    continue
            m = _NUM_RE.match(s, i)
            assert m is not None
            text, exp = m.group(1), m.group(2)
            if len(text) > MAX_DIGITS or exp is not None and abs(int(exp)) > 10_000:
                raise ParseError("number too long")
            j = m.end()
            value: Fraction
            if exp is None and "." in text:
                rm = _REPEAT_RE.match(s, j)
                if rm and (rm.group(3) is None or text.endswith(".")):
                    period = rm.group(1) or rm.group(2) or rm.group(3)
                    toks.append(("num", _repeating(text, period), space))
                    i, space = rm.end(), False
                    continue
                if s.startswith("...", j) and len(text.split(".")[1]) >= 1:
                    split = _period_of(text.split(".")[1])
                    if split is not None:
                        head, period = split
                        toks.append(("num", _repeating(text.split(".")[0] + "." + head, period), space))
                    else:  # "3.14..." is a truncated decimal, not a repeating one
                        toks.append(("numtext", text, space))
                    i, space = j + 3, False
                    continue
            value = Fraction(text)
            if exp is not None:
                value *= Fraction(10) ** int(exp)
            toks.append(("num", value, space) if exp is not None else ("numtext", text, space))
            i, space = j, False
            continue
        if c.isalpha():
            j = i
            while j < n and s[j].isalpha() and s[j].isascii():
                j += 1
            if j == i:
                raise ParseError(f"unexpected character {c!r}")
            toks.append(("id", s[i:j], space))
            i, space = j, False
            continue
        if c == "\\":
            if s.startswith("\\\\", i):
                toks.append(("op", "rowsep", space))
                i, space = i + 2, False
                continue
            m = _BEGIN_RE.match(s, i)
            if m:
                toks.append(("begin", m.group(1), space))
                i, space = m.end(), False
                continue
            m = _END_RE.match(s, i)
            if m:
                toks.append(("end", m.group(1), space))
                i, space = m.end(), False
                continue
            m = _CMD_RE.match(s, i)
            if not m:
                raise ParseError("dangling backslash")
            name = m.group(1)
            if name == "{":
                toks.append(("op", "lbrace", space))
                depth += 1
            elif name == "}":
                toks.append(("op", "rbrace", space))
                depth -= 1
            elif name == "|":
                toks.append(("op", "|", space))
            elif name == "cr":
                toks.append(("op", "rowsep", space))
            else:
                toks.append(("cmd", name, space))
            i, space = m.end(), False
            continue
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        if c in "+-*/^_!=<>,;()[]{}|&%':":
            toks.append(("op", c, space))
            i, space = i + 1, False
            continue
        if c == "." and s.startswith("...", i):
            toks.append(("op", "...", space))
            i, space = i + 3, False
            continue
        raise ParseError(f"unexpected character {c!r}")
    if len(toks) > MAX_TOKENS:
        raise ParseError("answer too long")
    return toks


# --------------------------------------------------------------------------------------------------------------


def _num(v: Fraction | int) -> Node:
    return ("n", Fraction(v))


def is_int_literal(node: Node) -> bool:
    return node[0] == "n" and node[1].denominator == 1


def has_symbols(node: object) -> bool:
    """Whether a tree contains a variable (used to decide if a trailing word is a unit)."""
    if not isinstance(node, tuple) or not node:
        return False
    if node[0] == "s":
        return True
    return any(has_symbols(child) for child in (node if not isinstance(node[0], str) else node[1:]))


def rename_symbol(node: Node, old: str, new: str) -> Node:
    """The tree with every symbol `old` renamed `new` (the index of a sum becomes a bound name)."""
    if node[0] == "s":
        return ("s", new) if node[1] == old else node
    if node[0] in ("i", "e") and node[0] == old:
        return ("s", new)  # an index named i or e is not the imaginary unit or Euler's number
    out = [node[0]]
    for child in node[1:]:
        if isinstance(child, tuple) and child and isinstance(child[0], str):
            out.append(rename_symbol(child, old, new))
        elif isinstance(child, tuple) and child and isinstance(child[0], tuple):
            out.append(tuple(rename_symbol(c, old, new) if c and isinstance(c[0], str) else c for c in child))
        else:
            out.append(child)
    return tuple(out)


class _Parser:
    def __init__(self, toks: list[tuple[str, object, bool]]) -> None:
        self.toks = toks
        self.pos = 0
        self.depth = 0
        self.bound = 0  # nesting of big operators (names their indices)

    # -- token helpers
    def peek(self, k: int = 0) -> tuple[str, object, bool] | None:
        j = self.pos + k
        return self.toks[j] if j < len(self.toks) else None

    def next(self) -> tuple[str, object, bool]:
        tok = self.peek()
        if tok is None:
            raise ParseError("unexpected end")
        self.pos += 1
        return tok

    def at(self, kind: str, value: object = None) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == kind and (value is None or tok[1] == value)

    def at_op(self, *values: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "op" and tok[1] in values

    def at_cmd(self, *values: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "cmd" and tok[1] in values

    def expect_op(self, value: str) -> None:
        if not self.at_op(value):
            raise ParseError(f"expected {value!r}")
        self.pos += 1

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("nesting too deep")

    def leave(self) -> None:
        self.depth -= 1

    def at_separator(self) -> bool:
        tok = self.peek()
        if tok is None:
            return False
        if tok[0] == "op" and tok[1] in (",", ";"):
            return True
        return tok[0] == "id" and tok[1].lower() in _CONNECTIVES

    # -- grammar
    def parse_top(self) -> Node:
        self.separators: list[str] = []
        items = self.parse_items(top=True)
        if self.peek() is not None:
            raise ParseError(f"unexpected token {self.peek()!r}")
        if len(items) == 1:
            return items[0]
        inequalities = all(i[0] == "rel" and all(op in ("<", ">", "<=", ">=") for op in i[2]) for i in items)
        if inequalities and "and" in self.separators and "or" not in self.separators:
            node = items[0]
            for item in items[1:]:
                node = ("cap", node, item)
            return node
        return ("list", tuple(items))

    def parse_items(self, top: bool = False) -> list[Node]:
        items: list[Node] = []
        while True:
            while self.at_separator():
                if top:
                    self.separators.append(str(self.peek()[1]).lower())
                self.pos += 1
            if self.peek() is None or self.at_op(")", "]", "rbrace", "}") or self.at_cmd("rangle"):
                break
            if self.at_op("..."):
                self.pos += 1
                items.append(("ellipsis",))
                continue
            items.append(self.parse_rel())
            if not self.at_separator():
                break
        if not items:
            raise ParseError("empty")
        return items

    def parse_rel(self) -> Node:
        self.enter()
        while self.at_op("=") or self.at_cmd("approx"):
            self.pos += 1  # "= 5" / "\approx 5": a dangling relation is just the value
        sides = [self.parse_union()]
        ops: list[str] = []
        while True:
            tok = self.peek()
            op = None
            if tok is not None and tok[0] == "op" and tok[1] in ("=", "<", ">"):
                op = _RELOPS[tok[1]]
            elif tok is not None and tok[0] == "cmd" and tok[1] in _RELOPS:
                op = _RELOPS[tok[1]]
            if op is None:
                break
            self.pos += 1
            ops.append(op)
            sides.append(self.parse_union())
        self.leave()
        if not ops:
            return sides[0]
        if ops == ["in"]:
            return ("in", sides[0], sides[1])
        if "in" in ops:
            raise ParseError("membership inside a chain")
        return ("rel", tuple(sides), tuple(ops))

    def parse_union(self) -> Node:
        parts = [self.parse_additive()]
        kinds = []
        while self.at_cmd("cup", "cap") or (self.at("id", "U") and self.peek(1) is not None):
            kinds.append(self.next()[1])
            parts.append(self.parse_additive())
        if not kinds:
            return parts[0]
        if "cap" in kinds:
            if len(parts) != 2 or kinds != ["cap"]:
                raise ParseError("mixed set operations")
            return ("cap", parts[0], parts[1])
        return ("union", tuple(parts))

    def parse_additive(self) -> Node:
        self.enter()
        terms: list[Node] = [self.parse_term()]
        while True:
            if self.at_op("+"):
                self.pos += 1
                terms.append(self.parse_term())
            elif self.at_op("-"):
                self.pos += 1
                terms.append(("neg", self.parse_term()))
            elif self.at_cmd("pm", "mp"):
                self.pos += 1
                rhs = self.parse_term()
                left = terms[0] if len(terms) == 1 else ("+", tuple(terms))
                terms = [("pm", left, rhs)]
            else:
                break
        self.leave()
        return terms[0] if len(terms) == 1 else ("+", tuple(terms))

    def starts_atom(self) -> bool:
        tok = self.peek()
        if tok is None:
            return False
        kind, val = tok[0], tok[1]
        if kind in ("num", "numtext", "begin"):
            return True
        if kind == "id":
            return val.lower() not in _CONNECTIVES and val != "U"
        if kind == "cmd":
            return (
                val in FUNCS
                or val
                in (
                    "frac",
                    "sqrt",
                    "pi",
                    "infty",
                    "binom",
                    "dollar",
                    "euro",
                    "pound",
                    "lfloor",
                    "lceil",
                    "based",
                    "Reals",
                    "emptyset",
                    "langle",
                    "sum",
                    "prod",
                    "angle",
                    "measuredangle",
                )
                or val in _GREEK
            )
        if kind == "op":
            return val in ("(", "{")
        return False

    def parse_term(self) -> Node:
        self.enter()
        factors: list[Node] = [self.parse_unary()]
        while True:
            if self.at_op("*") or self.at_cmd("cdot", "times", "ast"):
                self.pos += 1
                factors.append(self.parse_unary())
            elif self.at_op("/") or self.at_cmd("div", "over"):
                self.pos += 1
                denom = self.parse_unary()
                left = factors[0] if len(factors) == 1 else ("*", tuple(factors))
                factors = [("/", left, denom)]
            elif self.starts_atom():
                prev = factors[-1]
                if prev[0] == "n" and self.at("numtext"):
                    raise ParseError("two numbers side by side")
                if self.at_cmd("frac") and (
                    is_int_literal(prev) or prev[0] == "neg" and is_int_literal(prev[1])
                ):
                    frac = self.parse_atom()
                    if (
                        frac[0] == "/"
                        and is_int_literal(frac[1])
                        and is_int_literal(frac[2])
                        and 0 < frac[1][1] < frac[2][1]
                    ):  # mixed number `2\frac{1}{2}`, then its own postfix (`\%`, units)
                        whole = prev if prev[0] == "n" else prev[1]
                        mixed = self.postfix_ops(_num(whole[1] + frac[1][1] / frac[2][1]))
                        factors[-1] = mixed if prev[0] == "n" else ("neg", mixed)
                        continue
                    factors.append(self.postfix_ops(frac))
                    continue
                factors.append(self.parse_postfix())
            else:
                break
        self.leave()
        return factors[0] if len(factors) == 1 else ("*", tuple(factors))

    def parse_unary(self) -> Node:
        self.enter()
        try:
            if self.at_op("-"):
                self.pos += 1
                return ("neg", self.parse_unary())
            if self.at_op("+"):
                self.pos += 1
                return self.parse_unary()
            if self.at_cmd("pm", "mp"):
                self.pos += 1
                return ("pm", None, self.parse_unary())
            return self.parse_postfix()
        finally:
            self.leave()

    def parse_exponent(self) -> Node:
        if self.at_op("{"):
            self.pos += 1
            e = self.parse_additive_group("}")
            return e
        if self.at_op("-"):
            self.pos += 1
            return ("neg", self.parse_exponent())
        tok = self.peek()
        if tok is not None and tok[0] == "id" and len(tok[1]) > 1:
            self.toks[self.pos] = ("id", tok[1][1:], False)
            return self.atom_from_word(tok[1][0])
        return self.parse_atom()

    def parse_additive_group(self, closer: str) -> Node:
        items = self.parse_items()
        self.expect_op(closer)
        if len(items) != 1:
            raise ParseError("list inside a group")
        return items[0]

    def numeric_so_far(self, node: Node) -> bool:
        return not has_symbols(node) and node[0] not in ("tuple", "set", "matrix", "w")

    def parse_postfix(self) -> Node:
        return self.postfix_ops(self.parse_atom())

    def postfix_ops(self, node: Node) -> Node:
        """Apply the postfix operators that follow an operand: powers, !, %, degrees, subscripts, units."""
        while True:
            tok = self.peek()
            if tok is None:
                break
            kind, val = tok[0], tok[1]
            if kind == "op" and val == "^":
                self.pos += 1
                node = ("^", node, self.parse_exponent())
            elif kind == "op" and val == "!":
                self.pos += 1
                node = ("!", node)
            elif kind == "op" and val == "%":
                self.pos += 1
                node = ("pct", node)
            elif kind == "cmd" and val == "circ":
                self.pos += 1
                node = ("deg", node)
            elif kind == "op" and val == "'" and node[0] == "s":
                self.pos += 1
                node = ("s", node[1] + "'")
            elif kind == "op" and val == "_" and node[0] in ("s", "w"):
                self.pos += 1
                sub = self.next()
                if sub[0] == "op" and sub[1] == "{":
                    start = self.pos
                    while not self.at_op("}"):
                        self.next()
                    label = "".join(str(t[1]) for t in self.toks[start : self.pos])
                    self.pos += 1
                else:
                    label = str(sub[1])
                node = ("s", f"{node[1]}_{label}")
            elif kind == "id" and self.numeric_so_far(node) and self.is_unit_word(tok):
                node = self.parse_unit(node)
            elif kind == "cmd" and val == "dollar" and self.numeric_so_far(node):
                self.pos += 1
                node = ("unit", node, "dollar")
            else:
                break
        return node

    def is_unit_word(self, tok: tuple[str, object, bool]) -> bool:
        word = str(tok[1])
        low = word.lower()
        if low in _CONNECTIVES or low in FUNCS or low in ("pi", "e", "i"):
            return False
        if low in DEGREE_WORDS or low in PERCENT_WORDS:
            return True
        if len(word) >= 3:
            return True
        if low in SHORT_UNIT_WORDS and unit_info(low) is not None:
            return len(word) == 2 or tok[2]
        return low in SHORT_UNIT_WORDS and len(word) == 2

    def parse_unit(self, node: Node) -> Node:
        words: list[str] = []
        while True:
            tok = self.peek()
            if tok is None:
                break
            if tok[0] == "id" and (self.is_unit_word(tok) or words and tok[1].lower() not in _CONNECTIVES):
                words.append(str(tok[1]).lower())
                self.pos += 1
            elif (
                tok[0] == "op"
                and tok[1] == "^"
                and words
                and self.peek(1) is not None
                and self.peek(1)[0] in ("numtext", "num", "op")
            ):
                self.pos += 1
                exp = self.parse_exponent()
                words.append("^" + ("2" if exp == _num(2) else "3" if exp == _num(3) else "?"))
            elif (
                tok[0] == "op"
                and tok[1] == "/"
                and words
                and self.peek(1) is not None
                and self.peek(1)[0] == "id"
            ):
                self.pos += 1
                words.append("/")
            elif tok[0] == "op" and tok[1] == "." and words:
                self.pos += 1
            else:
                break
        phrase = " ".join(words)
        if words and words[0] in DEGREE_WORDS and len(words) == 1:
            return ("deg", node)
        if words and words[0] in PERCENT_WORDS and len(words) == 1:
            return ("pct", node)
        return ("unit", node, phrase)

    def atom_from_word(self, word: str) -> Node:
        low = word
        if low == "pi":
            return ("pi",)
        if low == "e":
            return ("e",)
        if low == "i":
            return ("i",)
        if low in ("inf", "infty", "infinity"):
            return ("inf",)
        return ("s", word)

    def parse_latex_arg(self) -> Node:
        """One TeX argument: a braced group, or a single digit / letter / command (`\\frac12`)."""
        tok = self.peek()
        if tok is None:
            raise ParseError("missing argument")
        if tok[0] == "op" and tok[1] == "{":
            self.pos += 1
            return self.parse_additive_group("}")
        if tok[0] == "numtext":
            text = str(tok[1])
            if len(text) > 1:
                self.toks[self.pos] = ("numtext", text[1:], False)
                if text[1:].startswith("."):
                    raise ParseError("bad argument")
                return _num(int(text[0]))
            self.pos += 1
            return _num(int(text))
        if tok[0] == "id":
            word = str(tok[1])
            if len(word) > 1:
                self.toks[self.pos] = ("id", word[1:], False)
            else:
                self.pos += 1
            return self.atom_from_word(word[0])
        if tok[0] == "cmd":
            return self.parse_atom()
        if tok[0] == "op" and tok[1] == "(":
            return self.parse_atom()
        raise ParseError("bad argument")

    def parse_function(self, name: str) -> Node:
        power: Node | None = None
        base: Node | None = None
        for _ in range(2):
            if self.at_op("^"):
                self.pos += 1
                power = self.parse_exponent()
            elif self.at_op("_") and name in ("log",):
                self.pos += 1
                base = self.parse_latex_arg() if not self.at("numtext") else self.parse_atom()
        if power == ("neg", _num(1)) and name in _INVERSE_TRIG:
            name, power = _INVERSE_TRIG[name], None
        if self.at_op("(", "{"):
            closer = ")" if self.at_op("(") else "}"
            self.pos += 1
            items = self.parse_items()
            self.expect_op(closer)
            if len(items) != 1:
                if name in ("gcd", "lcm", "max", "min"):
                    arg: Node = ("tuple", tuple(items), "(", ")")
                else:
                    raise ParseError("several arguments")
            else:
                arg = items[0]
        else:
            if self.peek() is None:
                raise ParseError("function without argument")
            arg = self.parse_postfix()
            while (
                self.starts_atom()
                and not self.at_cmd(*FUNCS)
                and not (self.at("id") and str(self.peek()[1]).lower() in FUNCS)
            ):
                arg = ("*", (arg, self.parse_postfix()))
        if name == "log" or name == "lg":  # a bare log is base 10, as in school and competition answers
            node: Node = ("log", arg, base if base is not None else _num(10))
        elif name == "ln":
            node = ("log", arg, None)
        elif name == "sqrt":
            node = ("sqrt", arg, None)
        elif name == "abs":
            node = ("abs", arg)
        else:
            node = ("f", name, arg)
        if power is not None:
            node = ("^", node, power)
        return node

    def parse_big_operator(self, name: str) -> Node:
        """`\\sum_{k=0}^{n-1} body` (limits in either order); the body is the product term that follows."""
        index: str | None = None
        lo = hi = None
        for _ in range(2):
            if self.at_op("_") and lo is None:
                self.pos += 1
                self.expect_op("{")
                var = self.next()
                if var[0] != "id" or len(str(var[1])) != 1:
                    raise ParseError("big operator without an index")
                index = str(var[1])
                self.expect_op("=")
                lo = self.parse_additive_group("}")
            elif self.at_op("^") and hi is None:
                self.pos += 1
                hi = self.parse_exponent()
        if index is None or lo is None or hi is None:
            raise ParseError("big operator without limits")
        self.bound += 1
        try:
            body = self.parse_term()
        finally:
            self.bound -= 1
        bound_name = f"@{self.bound + 1}"
        return ("bigop", name, bound_name, lo, hi, rename_symbol(body, index, bound_name))

    def parse_bracket(self, opener: str) -> Node:
        items = self.parse_items()
        tok = self.next()
        if tok[0] != "op" or tok[1] not in (")", "]"):
            raise ParseError("unclosed bracket")
        closer = str(tok[1])
        if len(items) == 1:
            if opener == "(" and closer == ")" or opener == "[" and closer == "]":
                return items[0]
            raise ParseError("half-open bracket around one item")
        return ("tuple", tuple(items), opener, closer)

    def parse_matrix(self, env: str) -> Node:
        if env == "array" and self.at_op("{"):
            while not self.at_op("}"):
                self.next()
            self.pos += 1
        rows: list[tuple[Node, ...]] = []
        cells: list[Node] = []
        while True:
            if self.at("end"):
                self.pos += 1
                break
            if self.at_op("rowsep"):
                self.pos += 1
                if cells:
                    rows.append(tuple(cells))
                cells = []
                continue
            if self.at_op("&"):
                self.pos += 1
                continue
            if self.peek() is None:
                raise ParseError("unclosed matrix")
            cells.append(self.parse_rel())
        if cells:
            rows.append(tuple(cells))
        if not rows or len({len(r) for r in rows}) != 1:
            raise ParseError("ragged matrix")
        return ("matrix", tuple(rows))

    def parse_atom(self) -> Node:
        self.enter()
        try:
            return self._parse_atom()
        finally:
            self.leave()

    def _parse_atom(self) -> Node:
        tok = self.next()
        kind, val = tok[0], tok[1]
        if kind == "num":
            return _num(val)
        if kind == "numtext":
            text = str(val)
            places = len(text.partition(".")[2])
            return ("n", Fraction(text), places) if places else _num(Fraction(text))
        if kind == "id":
            word = str(val)
            low = word.lower()
            if low in FUNCS:
                return self.parse_function(low)
            if low in ("pi", "inf", "infty", "infinity", "oo"):  # `oo`: sympy's infinity
                return self.atom_from_word("inf" if low == "oo" else low)
            if low in PERCENT_WORDS:
                raise ParseError("stray percent word")
            if len(word) == 1 or word in _SYMBOL_WORDS:
                if len(word) > 1:
                    self.pos -= 1
                    self.toks[self.pos] = ("id", word[1:], False)
                return self.atom_from_word(word[0])
            if len(word) == 2 and word.lower() not in SHORT_UNIT_WORDS:
                self.pos -= 1
                self.toks[self.pos] = ("id", word[1:], False)
                return self.atom_from_word(word[0])
            return ("w", low)
        if kind == "cmd":
            name = str(val)
            if name == "frac":
                a = self.parse_latex_arg()
                b = self.parse_latex_arg()
                return ("/", a, b)
            if name == "sqrt":
                index = None
                if self.at_op("["):
                    self.pos += 1
                    index = self.parse_additive_group("]")
                arg = self.parse_latex_arg() if not self.at_op("(") else self.parse_atom()
                return ("sqrt", arg, index)
            if name == "binom":
                return ("binom", self.parse_latex_arg(), self.parse_latex_arg())
            if name == "pi":
                return ("pi",)
            if name == "infty":
                return ("inf",)
            if name == "Reals":
                return ("reals",)
            if name == "emptyset":
                return ("set", ())
            if name in ("dollar", "euro", "pound"):
                inner = self.parse_unary()
                return ("unit", inner, "dollar") if name == "dollar" else ("unit", inner, name)
            if name == "based":
                self.expect_op("{")
                digits = ""
                while not self.at_op("}"):
                    digits += str(self.next()[1])
                self.pos += 1
                self.expect_op("{")
                base = int(str(self.next()[1]))
                self.expect_op("}")
                return ("based", digits, base)
            if name == "lfloor":
                inner = self.parse_rel()
                if not self.at_cmd("rfloor"):
                    raise ParseError("unclosed floor")
                self.pos += 1
                return ("f", "floor", inner)
            if name == "lceil":
                inner = self.parse_rel()
                if not self.at_cmd("rceil"):
                    raise ParseError("unclosed ceil")
                self.pos += 1
                return ("f", "ceil", inner)
            if name == "langle":
                items = self.parse_items()
                if not self.at_cmd("rangle"):
                    raise ParseError("unclosed angle bracket")
                self.pos += 1
                return ("tuple", tuple(items), "(", ")")
            if name in FUNCS:
                return self.parse_function(name)
            if name in _BIG_OPERATORS:
                return self.parse_big_operator(name)
            if name in ("angle", "measuredangle"):  # `\angle ABC` names an angle by its points
                tok = self.next()
                if tok[0] != "id" or not re.fullmatch(r"[A-Z]{1,3}", str(tok[1])):
                    raise ParseError("angle without points")
                return ("s", f"angle {tok[1]}")
            if name in _GREEK:
                return ("s", name)
            raise ParseError(f"unknown command \\{name}")
        if kind == "begin":
            if val not in _MATRIX_ENVS:
                raise ParseError(f"unsupported environment {val}")
            return self.parse_matrix(str(val))
        if kind == "op":
            if val in ("(", "["):
                return self.parse_bracket(str(val))
            if val == "{":
                items = self.parse_items()
                self.expect_op("}")
                return items[0] if len(items) == 1 else ("list", tuple(items))
            if val == "lbrace":
                if self.at_op("rbrace"):
                    self.pos += 1
                    return ("set", ())
                items = self.parse_items()
                if self.at_op("|", ":") and len(items) == 1:  # set-builder {x | 1 < x < 3}: the condition
                    self.pos += 1
                    cond = self.parse_items()
                    self.expect_op("rbrace")
                    return cond[0] if len(cond) == 1 else ("list", tuple(cond))
                self.expect_op("rbrace")
                return ("set", tuple(items))
            if val == "|":
                inner = self.parse_additive()
                self.expect_op("|")
                return ("abs", inner)
        raise ParseError(f"unexpected token {val!r}")


_CHOICE_PAREN_RE = re.compile(r"^\(\s*([A-Ja-j])\s*\)(?:\s*.*)?$", re.S)


def choice_letter(cleaned: str) -> str | None:
    """Multiple-choice letter of an answer such as `(C)`, `C`, `\\textbf{(C)} 42`, `Option C`, else None."""
    m = _CHOICE_PAREN_RE.match(cleaned)
    if m:
        if re.search(r"\(\s*[A-J]\s*\)", cleaned[m.end(1) + 1 :]):
            return None  # "(A) and (B)" names two choices
        return m.group(1).upper()
    m = re.match(
        r"^(?:(?:answer|option|choice)\s*(?:choice)?\s*:?\s*)\(?\s*([A-Ja-j])\s*\)?\s*[.:]?$", cleaned, re.I
    )
    if m:
        return m.group(1).upper()
    m = re.match(r"^([A-J])(?:\s*[.:)]?\s*|[.:)]\s+.*)$", cleaned, re.S)
    if m:
        return m.group(1)
    return None


_SHORT_WORDS = frozenset({"no", "ok", "up", "on", "in", "at"})  # whole answers that are words, not x*y
_REALS_WORDS = frozenset(
    {"allrealnumbers", "allreals", "realnumbers", "everyrealnumber", "allrealvalues", "allx"}
)
_EMPTY_WORDS = frozenset(
    {"nosolution", "nosolutions", "norealsolutions", "norealsolution", "emptyset", "thereisnosolution"}
)


def parse_answer(text: str) -> Node:
    """Tree of one final answer (raises ParseError when it is not a formula, e.g. free text)."""
    return parse_cleaned(clean_latex(text))


def parse_cleaned(s: str) -> Node:
    """`parse_answer` for a string already passed through `clean_latex`."""
    if not s:
        raise ParseError("empty answer")
    letter = choice_letter(s)
    if letter is not None:
        return ("choice", letter)
    key = re.sub(r"[^a-z]", "", s.lower())
    if s.lower() in _SHORT_WORDS:
        return ("w", s.lower())
    if key in _REALS_WORDS:
        return ("reals",)
    if key in _EMPTY_WORDS:
        return ("set", ())
    return _Parser(tokenize(s)).parse_top()
