"""String-level clean-up of a final answer before parsing: delimiters, unicode, spacing, text wrappers.

Only transformations that never change which mathematical object the answer denotes belong here; anything
that needs structure (units, percent, degrees, thousands separators inside tuples) is left to the parser.
"""

from __future__ import annotations

import re
from functools import lru_cache

_UNICODE = {
    "\u2212": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u00d7": r"\times ",
    "\u00f7": r"\div ",
    "\u00b7": r"\cdot ",
    "\u22c5": r"\cdot ",
    "\u2264": r"\le ",
    "\u2265": r"\ge ",
    "\u2260": r"\ne ",
    "\u00b1": r"\pm ",
    "\u2213": r"\mp ",
    "\u221e": r"\infty ",
    "\u03c0": r"\pi ",
    "\u221a": r"\sqrt",
    "\u00b0": r"\circ ",
    "\u222a": r"\cup ",
    "\u2229": r"\cap ",
    "\u2208": r"\in ",
    "\u2205": r"\emptyset ",
    "\u211d": r"\mathbb{R}",
    "\u221b": r"\sqrt[3]",
    "\u221c": r"\sqrt[4]",
    "\uff0c": ",",
    "\uff1a": ":",
    "\u3002": ".",
    "\uff08": "(",
    "\uff09": ")",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
    "\u2032": "'",
    "\u20ac": r"\euro ",
    "\u00a3": r"\pound ",
    "\u2248": r"\approx ",
}
_UNICODE_RE = re.compile("|".join(re.escape(k) for k in _UNICODE))

# Commands that only style their argument: `\text{ cm}` -> ` cm`. Unwrapped with brace matching.
_WRAPPERS = (
    "text",
    "textbf",
    "textit",
    "textrm",
    "textsf",
    "texttt",
    "textnormal",
    "mbox",
    "hbox",
    "mathrm",
    "mathbf",
    "mathit",
    "mathsf",
    "mathtt",
    "boldsymbol",
    "bm",
    "operatorname",
    "emph",
    "underline",
    "overline_text",
    "displaystyle",
    "mathnormal",
)
_WRAPPER_RE = re.compile(r"\\(" + "|".join(_WRAPPERS) + r")\s*\{")

_LATEX_GROUP_SEP_RE = re.compile(r"(?:,\\!|\{,\}|\{\\,\})\s*")
_LATEX_THOUSANDS_RE = re.compile(r"(?<![\d.])[1-9]\d{0,2}(?:(?:,\\!|\{,\}|\{\\,\})\s*\d{3})+(?![\d])")

_SIMPLE_SUBS = [
    # Thousands separators written for LaTeX (`10,\!080`, `1{,}000`, `14{\,}916`) before `\!` disappears. A
    # number never starts with 0, so `0{,}111` stays two numbers (a list), not 111.
    (_LATEX_THOUSANDS_RE, lambda m: _LATEX_GROUP_SEP_RE.sub("", m.group(0))),
    (re.compile(r"\\[dtc]frac"), r"\\frac"),
    (re.compile(r"\\[dt]binom"), r"\\binom"),
    (re.compile(r"\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits)(?![a-zA-Z])"), ""),
    # Names of segments and angles: `\overline{AB}` is the segment AB, `m\angle ABC` the angle ABC.
    (re.compile(r"\\overline\s*\{\s*([A-Z]{2,3})\s*\}"), r"\1"),
    (re.compile(r"\bm\s*(?=\\angle\b)"), ""),
    (
        re.compile(
            r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg)(?![a-zA-Z])\s*"
        ),
        "",
    ),
    (re.compile(r"\\(?:!|/)"), ""),
    (re.compile(r"\\(?:,|;|:|>| |(?:quad|qquad|enspace|thinspace|medspace|thickspace)(?![a-zA-Z]))"), " "),
    (re.compile(r"~"), " "),
    (re.compile(r"\\%"), "%"),
    (re.compile(r"\\(?:mathbb|mathbf|Bbb)\s*\{?\s*R\s*\}?"), r"\\Reals "),
    (re.compile(r"\\(?:varnothing|emptyset)\b"), r"\\emptyset "),
    (re.compile(r"\\(?:leq|leqslant|le)(?![a-zA-Z])"), r"\\le "),
    (re.compile(r"\\(?:geq|geqslant|ge)(?![a-zA-Z])"), r"\\ge "),
    (re.compile(r"\\(?:neq|ne)(?![a-zA-Z])"), r"\\ne "),
    (re.compile(r"\\(?:lt)(?![a-zA-Z])"), "<"),
    (re.compile(r"\\(?:gt)(?![a-zA-Z])"), ">"),
    (re.compile(r"<=|=<"), r"\\le "),
    (re.compile(r">=|=>"), r"\\ge "),
    (re.compile(r"!="), r"\\ne "),
    (re.compile(r"\+-|\+/-"), r"\\pm "),
    (re.compile(r"\\(?:degree|deg)(?![a-zA-Z])"), r"\\circ "),
    (re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ\b"), r"\\circ "),
    (re.compile(r"\\(?:rm|bf|it|sf|tt)(?![a-zA-Z])"), ""),
    (re.compile(r"\\(?:phantom|hphantom|vphantom)\s*(?:\{[^{}]*\}|-|\S)"), ""),
    (re.compile(r"(?<=[a-z])\.(?=[a-z]\.|\s|$)"), ""),
    (re.compile(r"\\(?:dots|ldots|cdots)(?![a-zA-Z])"), "..."),
    (re.compile(r"\\infin(?:ity)?(?![a-zA-Z])"), r"\\infty "),
    # `45^o` is a degree sign; `1.5 x 10^3` is a product
    (re.compile(r"(?<=[\d}])\s*\^\s*\{?\s*o\s*\}?(?![a-zA-Z])"), r"\\circ "),
    (re.compile(r"(?<=\d)\s*[xX]\s*(?=10\s*\^)"), r" \\times "),
    (re.compile(r"\{\s*([^{}]+?)\s*\\choose\s*([^{}]+?)\s*\}"), r"\\binom{\1}{\2}"),
    (re.compile(r"\\mid(?![a-zA-Z])"), "|"),
    (re.compile(r"\*\*"), "^"),  # Python power
    (re.compile(r"(?<=[\d)]\*)I\b|(?<=[+-] )I\b|(?<=[+-])I\b"), "i"),  # sympy's imaginary unit: 2 + 3*I
    (re.compile(r"\b0b([01]+)\b"), r"\1_2"),  # Python base prefixes
    (re.compile(r"\b0o([0-7]+)\b"), r"\1_8"),
    (re.compile(r"\b0x([0-9a-fA-F]+)\b"), lambda m: m.group(1).upper() + "_16"),
]


# `\frac13 (\approx 0.333)`, `\frac13 \text{ (approximately } 0.333)`: an approximation beside the value.
_APPROX_REMARK_RE = re.compile(
    r"\s*\(\s*(?:\\approx|approximately|approx\.?|about|roughly)\s*([-+]?\d[\d.]*)\s*\)\s*$", re.I
)

_SUPERSCRIPTS = str.maketrans(
    "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b\u207a", "0123456789-+"
)
_SUPERSCRIPT_RUN_RE = re.compile("[\u2070\u00b9\u00b2\u00b3\u2074-\u2079\u207b\u207a]+")


def unwrap_text_commands(s: str) -> str:
    """Replace `\\text{...}`-like wrappers by their content (brace matched), keeping spacing around it."""
    out = s
    for _ in range(50):
        m = _WRAPPER_RE.search(out)
        if not m:
            break
        start = m.end()
        depth = 1
        j = start
        while j < len(out) and depth:
            if out[j] == "{":
                depth += 1
            elif out[j] == "}":
                depth -= 1
            j += 1
        inner = out[start : j - 1] if depth == 0 else out[start:]
        out = out[: m.start()] + " " + inner + " " + out[j:]
    return out


def strip_delimiters(s: str) -> str:
    """Remove math-mode delimiters wrapped around the whole answer (`$x$`, `\\(x\\)`, `\\[x\\]`)."""
    s = s.strip()
    for _ in range(3):
        before = s
        if s.startswith("$$") and s.endswith("$$") and len(s) > 4:
            s = s[2:-2].strip()
        elif s.startswith("$") and s.endswith("$") and len(s) > 2 and not s.startswith("\\$"):
            s = s[1:-1].strip()
        elif s.startswith("\\(") and s.endswith("\\)"):
            s = s[2:-2].strip()
        elif s.startswith("\\[") and s.endswith("\\]"):
            s = s[2:-2].strip()
        if s == before:
            break
    return s


def balance_braces(s: str) -> str:
    """Repair `\\frac{1}{2` (close what was left open) and `\\frac{1}{2}}` (drop a stray closing brace)."""
    depth = 0
    out = []
    for k, ch in enumerate(s):
        if ch == "{" and not (k and s[k - 1] == "\\"):
            depth += 1
        elif ch == "}" and not (k and s[k - 1] == "\\"):
            if depth == 0:
                continue
            depth -= 1
        out.append(ch)
    return "".join(out) + "}" * depth


@lru_cache(maxsize=65536)
def clean_latex(s: str) -> str:
    """Canonical surface form of an answer: the input of the tokenizer and of plain string comparison."""
    s = _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], s)
    s = _SUPERSCRIPT_RUN_RE.sub(lambda m: "^{" + m.group(0).translate(_SUPERSCRIPTS) + "}", s)
    s = re.sub(r"(\*\*|__)(.+?)\1", r"\2", s)  # markdown bold
    s = s.replace("\\\\", " \\cr ")  # matrix row breaks, before single-backslash spacing commands
    s = s.replace("\\$", "\\dollar ")
    s = strip_delimiters(s)
    s = s.replace("$", " ")
    s = re.sub(r"\\boxed\s*\{", "{", s)
    s = re.sub(r"\\fbox\s*\{", "{", s)
    for pattern, repl in _SIMPLE_SUBS:
        s = pattern.sub(repl, s)
    s = unwrap_text_commands(s)
    s = _APPROX_REMARK_RE.sub(r" \\approx \1", s)
    s = balance_braces(s)
    s = s.strip()
    if s.endswith("\\") and not s.endswith("\\\\"):
        s = s[:-1].rstrip()
    opened, closed = s.count("\\{"), s.count("\\}")
    if opened > closed:
        s += "\\}" * (opened - closed)
    # A trailing sentence period ("5." / "\frac{7}{5}i.") is punctuation, not part of the answer.
    if s.endswith(".") and not s.endswith("..."):
        s = s[:-1].rstrip()
    s = re.sub(r"\s+", " ", s).strip()
    return s


_TEXT_KEEP = re.compile(r"[^0-9a-z\u00c0-\uffff]+")


def text_key(s: str) -> str:
    """Key for comparing free-text answers: lower case, letters and digits only, no leading article."""
    s = clean_latex(s).lower()
    s = re.sub(r"\\[a-zA-Z]+", " ", s)
    s = re.sub(r"\b(the|a|an)\b", " ", s)
    s = s.replace("p.m.", "pm").replace("a.m.", "am")
    return _TEXT_KEEP.sub("", s)


_FORMULA_HINT_RE = re.compile(r"[\\^_=+<>]")
_MARKS_RE = re.compile(r"\\[a-zA-Z]+|[-+*/^_=<>|,]")
_WORD_MARKS_RE = re.compile(r"[+*/^_=<>|]|(?<![A-Za-z])-|-(?![A-Za-z])")


def formula_marks(s: str) -> tuple[str, ...]:
    """Operators and commands of an answer in order: what `text_key` throws away but a formula depends on.

    In a formula every `-` and `,` counts; in prose a hyphen between letters (`x-intercept`) and commas do not.
    """
    s = clean_latex(s)
    if _FORMULA_HINT_RE.search(s):
        return tuple(_MARKS_RE.findall(s))
    return tuple(_WORD_MARKS_RE.findall(s))
