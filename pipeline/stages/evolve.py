"""Query evolution (methods.md §2): seed problems rewritten by the published rewrite types, kept only when checked.

Types (``types:``), each a versioned template under ``prompts/evolve/``:

- MuggleMath (arXiv 2310.05506): ``change_numbers``, ``fractions_percentages``, ``combine_concepts``,
  ``conditional``, ``complexity``.
- WizardMath Evol-Instruct: ``upward`` (one of add constraints / concretize / deepen reasoning, drawn per call; or
  name one: ``upward_constraints``, ``upward_concretize``, ``upward_reasoning``), ``downward`` (easier),
  ``breadth`` (a rarer problem of the same domain).
- MetaMath: ``rephrase`` (answer unchanged), ``sv`` (Self-Verification) and ``fobar`` (backward questions).

How each row's answer is trusted:

- answer-keeping (``rephrase``): the solver role answers ``samples`` times; kept when the agreed answer (at least
  ``min_agree`` of the samples ASKED, ``pipeline.quality.agreement``) matches the seed's gold.
- answer-changing (MuggleMath, upward, downward, breadth): no gold exists, so the agreed answer becomes the row's
  pseudo-gold with its votes recorded; with ``teacher_answer`` the teacher also states an answer under the problem
  (``#### N``) and it must agree too.
- backward (``fobar``, ``sv``): one number of the question is masked as ``x`` (code, not the model), the forward
  answer is stated (FOBAR: MetaMath's "If we know the answer ... is A, what is the value of unknown variable
  x?"; SV: the teacher turns the question sentence and A into a statement) and the agreed answer must be the
  masked number, and every equation in a solution that mentions ``x`` must hold at that number
  (``pipeline.quality.false_equations``: a real weak solver wrote "(x + 10) = 2x + 10 … 10 = x" and still boxed
  the right x; such a sample is refused as ``solve_false_equation``, re-asked once, and counts against agreement).

Every rewritten question passes the shared gates (``pipeline.quality.question_problems``: asks something, no
worked solution or leaked answer, no meta text, not a near-copy of its parent; rephrase also keeps every quantity)
plus an unchanged-question check; every kept solution passes ``solution_problems``. Rejections are counted by
reason and reach ``OUT/dropped/`` with the type in ``method_params``. Inside a ``rounds:`` group, round r evolves
round r-1's rows (``from: [evolve@last], from_first_round: [seeds]``), each row's answer serving as the gold of
its answer-keeping and backward rewrites.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.quality import (
    agreement,
    false_equations,
    question_problems,
    solution_problems,
    values_in,
    votes,
)
from pipeline.records import derive, make_record
from pipeline.stages import StageContext
from pipeline.stages.fobar import fobar_question, mask_span, unknown_name
from pipeline.stages.llm_step import Candidate, LLMParams, LLMStep, generator, stable_slot, usable_texts
from pipeline.stages.symbolic import NUM, format_number, parse_number
from pipeline.verify import answers_match, extract_answer

NAME = "evolve"
VERSION = "1"
ROLES = {
    "teacher": "rewrites the problems (evolution) and writes Self-Verification statements",
    "solver": "answers each rewritten problem `samples` times; agreement decides (defaults to the teacher's model)",
}
OUTPUT = "rows"
VERIFIER = "gold (rephrase) / majority pseudo-gold (answer-changing types) / masked number (fobar, sv)"

Kind = Literal["keeps", "changes", "backward"]
UPWARD = ("upward_constraints", "upward_concretize", "upward_reasoning")
# type -> how its answer is checked
KINDS: dict[str, Kind] = {
    "change_numbers": "changes",
    "fractions_percentages": "changes",
    "combine_concepts": "changes",
    "conditional": "changes",
    "complexity": "changes",
    "upward": "changes",
    **{t: "changes" for t in UPWARD},
    "downward": "changes",
    "breadth": "changes",
    "rephrase": "keeps",
    "sv": "backward",
    "fobar": "backward",
}
MUGGLEMATH = ["change_numbers", "fractions_percentages", "combine_concepts", "conditional", "complexity"]
SV_ASK = "What is the value of unknown variable {var}?"
# a label the model put before its problem ("#Rewritten Prompt#:", "**New problem:**", "Rephrased question:")
_LABEL = re.compile(
    r"^\s*(?:[*#_]+\s*)?(?:the\s+)?(?:(?:rewritten|rephrased|new|created|evolved|modified|easier|harder|revised)\s+)?"
    r"(?:math\s+|word\s+)?(?:prompt|problem|question|result)\s*#?\s*[*_]*\s*[:：]\s*(?:[*_]+\s*)?",
    re.I,
)
_ANSWER_LINE = re.compile(r"^\s*####\s*(.+?)\s*$", re.M)


def _default_templates() -> dict[str, str]:
    refs = {t: f"evolve/{t}.v1" for t in KINDS if t not in ("upward", "sv", "fobar")}
    return {**refs, "sv_statement": "evolve/sv_statement.v1", "solve": "evolve/solve.v1"}


class Params(LLMParams):
    types: list[str] = Field(
        default_factory=lambda: [*MUGGLEMATH, "upward", "downward", "breadth", "rephrase", "sv", "fobar"],
        min_length=1,
        description=f"rewrite types, any of {sorted(KINDS)}",
    )
    per_type: int = Field(1, ge=1, le=100, description="rewrites per seed and type")
    samples: int = Field(4, ge=1, le=256, description="solver answers sampled per rewritten problem")
    min_agree: int | float = Field(
        0.5, description="samples that must agree: a count (2) or a share of the samples ASKED (0.5)"
    )
    teacher_answer: bool = Field(
        False, description="answer-changing types: the teacher states an answer (#### N) that must agree as well"
    )
    temperature: float = Field(0.7, ge=0, le=2, description="solver sampling")
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(1024, ge=16, description="per solver answer")
    rewrite_temperature: float = Field(0.7, ge=0, le=2, description="teacher sampling (MetaMath 0.7, Evol 1.0)")
    rewrite_max_tokens: int = Field(512, ge=16, description="per rewritten problem")
    templates: dict[str, str] = Field(
        default_factory=_default_templates, description="template per rewrite type, plus sv_statement and solve"
    )

    @field_validator("types", mode="before")
    @classmethod
    def _types_from_text(cls, types: Any) -> Any:
        """``"[upward, rephrase]"`` or ``"upward,rephrase"`` (a recipe's environment variable) as a list."""
        if isinstance(types, str):
            return [t.strip(" '\"") for t in types.strip().strip("[]").split(",") if t.strip(" '\"")]
        return types

    @field_validator("types")
    @classmethod
    def _known_types(cls, types: list[str]) -> list[str]:
        unknown = sorted(set(types) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown evolve types {unknown}; known: {sorted(KINDS)}")
        return list(dict.fromkeys(types))

    @field_validator("templates")
    @classmethod
    def _complete_templates(cls, templates: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(templates) - set(_default_templates()))
        if unknown:
            raise ValueError(f"unknown template steps {unknown}; known: {sorted(_default_templates())}")
        return {**_default_templates(), **templates}

    @model_validator(mode="after")
    def _agreement(self) -> Params:
        changing = [t for t in self.types if KINDS[t] == "changes"]
        needed = self.min_agree if isinstance(self.min_agree, int) else -(-self.min_agree * self.samples // 1)
        if changing and needed < 2:  # one sample's answer is no agreement: the real model's were all wrong
            raise ValueError(f"types {changing} take the agreed answer as the gold: min_agree must ask at least 2 "
                             f"agreeing samples (samples={self.samples}, min_agree={self.min_agree})")
        if isinstance(self.min_agree, float) and not 0 < self.min_agree <= 1:
            raise ValueError(f"min_agree as a share must be in (0, 1], got {self.min_agree}")
        if isinstance(self.min_agree, int) and not 1 <= self.min_agree <= self.samples:
            raise ValueError(f"min_agree as a count must be in 1..samples ({self.samples}), got {self.min_agree}")
        return self


@dataclass
class EvolveCandidate(Candidate):
    """One (parent row, type, index) rewrite on its way through rewrite -> solve."""

    type: str = ""
    template: str = ""  # the rewrite step's template key ("upward_reasoning", "sv_statement"; "" for fobar)
    gold: str | None = None  # the answer to check against: the parent's (keeps) or the masked number (backward)
    masked: str | None = None  # backward: the masked question (x in place of one number)
    forward: str | None = None  # backward: the forward answer the question states
    raw: str = ""  # the teacher's text when the rewrite was rejected (for the dropped table)
    var: str = "x"
    question: str | None = None
    teacher_says: str | None = None
    samples: list[str | None] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    verdict: dict[str, Any] | None = None
    solution: str | None = None
    answer: str | None = None

    @property
    def kind(self) -> Kind:
        return KINDS[self.type]


# ------------------------------------------------------------------------------------------------ text helpers


def clean_problem(text: str) -> str:
    """The problem without a leading label and without surrounding quotes or markdown rules."""
    text = text.strip().strip("`").strip()
    text = _LABEL.sub("", text, count=1).strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def split_stated_answer(text: str) -> tuple[str, str | None]:
    """(problem, the teacher's ``#### N`` answer or None)."""
    lines = _ANSWER_LINE.findall(text)
    if not lines:
        return text, None
    return _ANSWER_LINE.sub("", text).strip(), lines[-1]


def _normalized(text: str) -> str:
    return " ".join(re.sub(r"[^\w%$.]+", " ", text.lower()).split())


def mask_choices(question: str) -> list[tuple[int, int, str]]:
    """Numbers of ``question`` a backward question may mask: (start, end, text); never a bare 0 or 1 (structure,
    "1 box") and never a year after "in"."""
    found = []
    for m in NUM.finditer(question):
        value = parse_number(m.group(0))
        if value in (0, 1) and "." not in m.group(0):
            continue
        if re.fullmatch(r"1[89]\d\d|20\d\d", m.group(0)) and re.search(r"\b(?:in|since|of|year)\s+$", question[: m.start()], re.I):
            continue
        found.append((m.start(), m.end(), m.group(0)))
    return found


def split_question_sentence(text: str) -> tuple[str, str]:
    """(the story before the last sentence, the last sentence): MetaMath's SV keeps the first and restates the
    second with its answer."""
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s+\S)", text.strip())]
    if not ends:
        return "", text.strip()
    cut = ends[-1]
    return text[:cut].strip(), text[cut:].strip()


def _answer_text(answer: str | None) -> str | None:
    if answer is None:
        return None
    text = answer.strip().replace(",", "")
    return text or None


# ------------------------------------------------------------------------------------------------ the steps


class _Steps:
    """The stage's LLM steps: one rewrite step per template in use (teacher), the statement step and the solver."""

    def __init__(self, params: Params, ctx: StageContext, templates: set[str]) -> None:
        p = params
        rewrite = {"temperature": p.rewrite_temperature, "top_p": p.top_p, "max_tokens": p.rewrite_max_tokens}
        self.params, self.ctx = params, ctx
        self.by_name: dict[str, LLMStep[EvolveCandidate]] = {
            name: LLMStep(ctx, name, p.templates[name], "teacher", reasks=p.reasks, **rewrite)
            for name in sorted(templates)
        }
        self.by_name["solve"] = LLMStep(
            ctx, "solve", p.templates["solve"], "solver", reasks=p.reasks, n=p.samples,
            temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens,
        )


def _rewrite_check(params: Params):  # noqa: ANN202 - a Parse for LLMStep
    def check(cand: EvolveCandidate, text: str, finish: str) -> str | None:
        if finish == "length":
            return "truncated"
        if cand.template == "sv_statement":
            return _statement_problem(cand, clean_problem(text))
        problem, stated = split_stated_answer(clean_problem(text))
        problem = clean_problem(problem)
        if not problem:
            return "no_problem"
        if params.teacher_answer and cand.kind == "changes" and extract_answer(f"#### {stated}" if stated else "") is None:
            return "teacher_no_answer"
        return _question_problem(cand, problem)

    return check


def _question_problem(cand: EvolveCandidate, problem: str) -> str | None:
    """The first reason ``problem`` is unusable as a rewrite of ``cand``'s parent, or None."""
    source = cand.parent["question"]
    if _normalized(problem) == _normalized(source):
        return "unchanged_question"
    keeps = cand.kind == "keeps"
    numbers_only = cand.type == "change_numbers"  # its rewrite is a near-copy by design: the numbers must differ
    if numbers_only and values_in(problem) == values_in(source):
        return "unchanged_numbers"
    problems = question_problems(
        problem, source=source, answer=cand.gold if keeps else None, keeps_quantities=keeps,
        near_copy=1.01 if numbers_only or cand.type == "breadth" else 0.9,
    )
    return problems[0] if problems else None


def _statement_problem(cand: EvolveCandidate, statement: str) -> str | None:
    """A Self-Verification statement must state the forward answer, keep the unknown, and ask nothing."""
    if not statement:
        return "no_problem"
    if "?" in statement:
        return "statement_is_question"
    forward = _answer_text(cand.parent.get("answer")) or ""
    if forward and not any(answers_match(v, forward) for v in re.findall(r"\d[\d,]*(?:\.\d+)?", statement)):
        return "statement_lacks_answer"
    _, ask = split_question_sentence(cand.masked or "")
    if re.search(rf"(?<!\w){cand.var}(?!\w)", ask) and not re.search(rf"(?<!\w){cand.var}(?!\w)", statement):
        return "statement_lost_unknown"
    return None


def _solution_check(cand: EvolveCandidate, text: str, finish: str) -> str | None:
    if finish == "length":
        return "solve_truncated"
    answer = extract_answer(text)
    if answer is None:
        return "solve_no_answer"
    problems = solution_problems(text, question=cand.question)
    if problems:
        return f"solve_{problems[0]}"
    if cand.kind == "backward" and cand.gold is not None and answers_match(answer, cand.gold) \
            and false_equations(text, cand.var, cand.gold):
        # x is known (the masked number): a wrong step that still lands on it. A wrong answer is left to
        # agreement (wrong_answer), not re-asked.
        return "solve_false_equation"
    return None


# ------------------------------------------------------------------------------------------------ the stage


def _candidates(records: list[dict[str, Any]], params: Params, ctx: StageContext) -> list[EvolveCandidate]:
    cands = []
    for rec in records:
        ctx.funnel.add(ctx.stage, "in")
        rng = ctx.rng(rec["id"])
        stable = stable_slot(rec)
        gold = _answer_text(rec.get("answer"))
        for kind in params.types:
            for j in range(params.per_type):
                cand = EvolveCandidate(parent=rec, slot=f"{stable}|{kind}|{j}", seed=rng.getrandbits(31), type=kind)
                if kind == "upward":
                    cand.template = rng.choice(UPWARD)
                elif kind == "sv":
                    cand.template = "sv_statement"
                elif kind != "fobar":
                    cand.template = kind
                if KINDS[kind] != "changes" and not gold:
                    ctx.reject("no_gold", _dropped(cand, rec["question"]))
                    continue
                cand.gold = gold
                if KINDS[kind] == "backward" and not _mask(cand, rng):
                    ctx.reject("no_number_to_mask", _dropped(cand, rec["question"]))
                    continue
                cands.append(cand)
    return cands


def _mask(cand: EvolveCandidate, rng: Any) -> bool:
    """Mask one number of the parent's question as the unknown; the candidate's gold becomes that number.

    Never a number equal to the forward answer: the backward question states that answer, so a solver that copies
    it would match the masked number without solving anything (seen on a real model: "... 5 candy bars. He spent a
    total of 28 dollars ... the answer is 4, what is x?" with x = 4, kept on a solution that computed 7x = 28)."""
    question = cand.parent["question"]
    forward = cand.gold or ""
    choices = [c for c in mask_choices(question) if not (forward and answers_match(c[2].replace(",", ""), forward))]
    var = unknown_name(question)
    if not choices or var is None:
        return False
    start, end, text = rng.choice(choices)
    cand.var, cand.masked = var, mask_span(question, start, end, var)
    cand.forward = cand.gold
    cand.gold = format_number(parse_number(text)) or text.replace(",", "")
    if cand.type == "fobar":
        cand.question = fobar_question(cand.masked, cand.forward or "", var)
    return True


def run(records: list[dict[str, Any]], params: Params, ctx: StageContext) -> list[dict[str, Any]]:
    cands = _candidates(records, params, ctx)
    steps = _Steps(params, ctx, {c.template for c in cands if c.template})
    _rewrite(cands, steps)
    live = [c for c in cands if c.reject is None and c.question]
    _solve(live, steps)
    out: list[dict[str, Any]] = []
    for cand in cands:
        if cand.verdict is None:
            ctx.reject(cand.reject or "unverified", _rejected_row(cand, steps), cand.detail)
            continue
        out.append(_row(cand, steps))
        ctx.funnel.add(ctx.stage, "generated")
    ctx.advance(len(records))
    return out


def _rewrite(cands: list[EvolveCandidate], steps: _Steps) -> None:
    """One teacher call per candidate that needs one (all but fobar), batched per template."""
    check = _rewrite_check(steps.params)
    for name in sorted({c.template for c in cands if c.template}):
        group = [c for c in cands if c.template == name]
        comps = steps.by_name[name](group, lambda c: _rewrite_variables(c, steps.params), check)
        for cand, comp in zip(group, comps, strict=True):
            if not comp.ok:
                cand.fail("request_error", comp.error or "")
            elif comp.problems[0] is not None:
                cand.raw = comp.texts[0][:2000]
                cand.fail(comp.problems[0], f"teacher wrote: {cand.raw[:300]}")
            elif cand.template == "sv_statement":
                base, _ = split_question_sentence(cand.masked or "")
                statement = clean_problem(comp.texts[0])
                cand.question = f"{base} {statement} {SV_ASK.format(var=cand.var)}".strip()
            else:
                problem, stated = split_stated_answer(clean_problem(comp.texts[0]))
                cand.question = clean_problem(problem)
                cand.teacher_says = _answer_text(stated) if steps.params.teacher_answer else None


def _rewrite_variables(cand: EvolveCandidate, params: Params) -> dict[str, Any]:
    if cand.template == "sv_statement":
        _, ask = split_question_sentence(cand.masked or "")
        return {"question": ask, "answer": cand.forward}
    return {"question": cand.parent["question"], "state_answer": params.teacher_answer and cand.kind == "changes"}


def _solve(live: list[EvolveCandidate], steps: _Steps) -> None:
    p = steps.params
    comps = steps.by_name["solve"](live, lambda c: {"question": c.question}, _solution_check)
    for cand, comp in zip(live, comps, strict=True):
        if not comp.ok:
            cand.fail("request_error", comp.error or "")
            continue
        cand.samples = usable_texts(comp)
        answers = [extract_answer(t) if t is not None else None for t in cand.samples]
        cand.answers = (answers + [None] * p.samples)[: p.samples]
        top = agreement(cand.answers, p.samples, p.min_agree)
        _decide(cand, top, steps)


def _decide(cand: EvolveCandidate, top: str | None, steps: _Steps) -> None:
    p = steps.params
    answered = sum(a is not None for a in cand.answers)
    if top is None:
        cand.fail("no_agreement", f"no answer reached min_agree={p.min_agree} of {p.samples} asked ({answered} answered)")
        return
    _, _, agreeing = votes(cand.answers, top, p.samples)
    tally = f"{agreeing}/{p.samples} agree, {answered} answered"
    if cand.kind in ("keeps", "backward"):
        target = "the masked number" if cand.kind == "backward" else "the gold"
        if not answers_match(top, cand.gold):
            cand.fail("wrong_answer", f"agreed answer {top!r} ({tally}) != {target} {cand.gold!r}")
            return
        cand.answer = cand.gold
        detail = f"agreed answer {top!r} ({tally}) matches {target} {cand.gold!r}"
    else:
        if p.teacher_answer and (cand.teacher_says is None or not answers_match(top, cand.teacher_says)):
            cand.fail("teacher_disagrees", f"agreed answer {top!r} ({tally}) != teacher's {cand.teacher_says!r}")
            return
        if "leaks_answer" in question_problems(cand.question, source=cand.parent["question"], answer=top,
                                               near_copy=1.01):
            cand.fail("leaks_answer", f"the question states its agreed answer {top!r}")
            return
        cand.answer = top
        detail = f"pseudo-gold {top!r} ({tally}; min_agree={p.min_agree}, no gold)" + (
            "; the teacher's stated answer agrees" if p.teacher_answer else ""
        )
    cand.solution = next(
        t for t, a in zip(cand.samples, cand.answers, strict=False) if t and a and answers_match(a, cand.answer)
    )
    cand.verdict = {"status": "verified", "method": "gold" if cand.kind == "keeps" else "majority",
                    "votes": agreeing, "samples": p.samples, "detail": detail}


def _method_params(cand: EvolveCandidate, steps: _Steps) -> dict[str, Any]:
    params = steps.params.model_dump(mode="json")
    params.update(version=VERSION, type=cand.type, template=steps.params.templates.get(cand.template or "", None),
                  kind=cand.kind)
    if cand.kind == "backward":
        params.update(masked=cand.gold, forward_answer=cand.forward)
    return params


def _row(cand: EvolveCandidate, steps: _Steps) -> dict[str, Any]:
    return derive(
        cand.parent, question=cand.question, solution=cand.solution, answer=cand.answer, method=NAME,
        method_params=_method_params(cand, steps), verification=cand.verdict,
        generator=generator(cand, steps.by_name), run_id=steps.ctx.run_id or cand.parent.get("run_id"),
        round=steps.ctx.round,
    )


def _dropped(cand: EvolveCandidate, question: str) -> dict[str, Any]:
    return make_record(
        question=question, solution=None, answer=None, method=NAME, source=cand.parent.get("source"),
        parent_ids=[cand.parent["id"]], method_params={"type": cand.type, "version": VERSION},
        verification={"status": "failed"},
    )


def _rejected_row(cand: EvolveCandidate, steps: _Steps) -> dict[str, Any]:
    """What a thrown-away candidate got to, for the dropped table: its question (or the teacher's raw text) and
    the last solution seen."""
    text = cand.question or cand.raw
    solution = next((t for t in cand.samples if t), None)
    return make_record(
        question=text or "", solution=solution, answer=cand.gold if cand.kind != "changes" else None, method=NAME,
        source=cand.parent.get("source"), parent_ids=[cand.parent["id"]],
        method_params=_method_params(cand, steps), verification={"status": "failed", "detail": cand.detail},
        generator=generator(cand, steps.by_name), round=steps.ctx.round,
    )
