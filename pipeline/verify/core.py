"""Matching and grading logic shared by the calling process and the sandbox workers.

In the calling process, pairs the fast paths cannot settle are escalated to a sandbox worker under a hard
deadline; inside a worker (where the caller already enforces the deadline by killing it) sympy runs inline.
"""

from __future__ import annotations

import time
from functools import lru_cache

from .compare import Judge
from .extract import extract_answer
from .parse import Node, ParseError, parse_answer
from .sandbox import COUNTERS, VerifyTimeout, WorkerError, default_pool

MAX_INPUT_CHARS = 5000


@lru_cache(maxsize=65536)
def parsed_gold(gold: str) -> Node | ParseError:
    """Gold answers repeat across many samples: parse each once."""
    try:
        return parse_answer(gold)
    except ParseError as exc:
        return exc
    except RecursionError:
        return ParseError("nesting too deep")


def decide_sympy(a: Node, b: Node, mode: str) -> bool:
    from .symbolic import decide

    return decide(a, b, mode)


def _run(given: str, gold: str, escalate, deadline: float | None = None) -> tuple[bool, str]:
    if len(given) > MAX_INPUT_CHARS or len(gold) > MAX_INPUT_CHARS:
        return False, "answer too long"
    try:
        return Judge(escalate, deadline).match(given, gold, parsed_gold(gold))
    except VerifyTimeout:
        return False, "timeout"
    except WorkerError as exc:
        return False, f"verifier error: {exc}"
    except RecursionError:
        return False, "answer nested too deeply"
    except Exception as exc:  # a verifier bug must reject one row, not kill a build
        return False, f"verifier error: {type(exc).__name__}: {exc}"[:300]


def match_inline(given: str, gold: str) -> tuple[bool, str]:
    """Match with sympy in this process (only inside a sandbox worker)."""

    def escalate(a: Node, b: Node, mode: str) -> bool:
        return decide_sympy(a, b, mode)

    return _run(given, gold, escalate)


def match_sandboxed(given: str, gold: str, timeout: float) -> tuple[bool, str]:
    """Match in this process; sympy work goes to the pool and shares one deadline per pair."""
    deadline = time.monotonic() + timeout

    def escalate(a: Node, b: Node, mode: str) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            COUNTERS.add("timeouts")
            raise VerifyTimeout("timeout")
        COUNTERS.add("escalations")
        return bool(default_pool().call(("decide", a, b, mode), remaining))

    return _run(given, gold, escalate, deadline)


def grade_with(output: str, gold: str, matcher) -> tuple[bool, str | None, str]:
    try:
        extracted = extract_answer(output)
    except Exception as exc:  # see _run: one bad row must not stop a build
        return False, None, f"verifier error: {type(exc).__name__}: {exc}"[:300]
    if extracted is None:
        return False, None, "no committed answer found"
    ok, reason = matcher(extracted, gold)
    return ok, extracted, reason


def grade_inline(output: str, gold: str) -> tuple[bool, str | None, str]:
    return grade_with(output, gold, match_inline)


def match_as_grade_inline(given: str, gold: str) -> tuple[bool, str | None, str]:
    """Grade a final answer that needs no extraction (batch matching of answer pairs)."""
    ok, reason = match_inline(given, gold)
    return ok, given, reason
