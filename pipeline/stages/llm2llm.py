"""LLM2LLM (methods.md §3, SqueezeAILab/LLM2LLM): new problems only where the student fails, round after round.

One round of the stage, over the current training set (the seeds plus every item kept so far: ``from: [seeds,
llm2llm]`` inside a ``rounds:`` group):

1. the **student** answers every item (``student_samples`` samples, greedy or T/top-p; the pass rate per item),
   graded against the item's answer with ``pipeline.verify``;
2. for every wrong **original seed** (never an augmented item: the paper's rule, ``filter.py``), the **teacher**
   writes ``per_wrong_seed`` new problems from the paper's template (names and numbers changed, under 100 words,
   a numeric answer, the calculation shown, ``#### N``); the question and solution gates of ``pipeline.quality``
   reject leaks, copies and non-questions;
3. the **solver** solves each new problem ``solver_samples`` times; it is kept when at least ``min_agree`` samples
   reach the teacher's answer; new questions equal (normalised) to one of the set or to another new one are
   dropped (the build's exact and near dedup run again at the end).

The student can change between rounds (``round_roles``): the recipe's student every round, one recipe model per
round (``students: [s1, s2, s3]``), or one given while the build waits (``pause_for_student``: the Prefect flow
pauses for it, or ``mathaug resume OUT --student PATH``). Round counters (``student_correct``, ``student_total``,
``wrong_seeds``, ``held_out_correct`` ...) reach the manifest's ``rounds`` and can stop the group
(``until: {metric: llm2llm.student_correct/student_total, at_least: 0.95}``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.dedup.text import exact_key
from pipeline.quality import question_problems, solution_problems, votes
from pipeline.records import derive, make_record
from pipeline.stages import RoundInput, StageContext
from pipeline.stages.llm_step import Candidate, LLMParams, LLMStep, generator, stable_slot, usable_texts
from pipeline.verify import answers_match, extract_answer

NAME = "llm2llm"
VERSION = "2"
ROLES = {
    "teacher": "writes new problems from the seeds the student got wrong",
    "student": "answers every item of the current set (the model being trained)",
    "solver": "solves each new problem; agreement with the teacher's answer verifies it",
}
OUTPUT = "rows"
VERIFIER = "agreement (teacher's answer, solver votes)"

# "1. Question: ...", "**Question:** ...", "New problem: Question: ..." (the paper's numbered format, markdown)
_QUESTION = re.compile(
    r"(?:^|\n)[ \t>*-]*(?:\d+\s*[.)][ \t]*)?(?:new\s+problem\s*:\s*)?[*\s]*question[*\s]*:[*\t ]*", re.I
)
# "Answer:" or, as a real 0.5B model wrote after the template's own label, "Answer key:"; on its own line or after
# the question's last sentence
_ANSWER = re.compile(r"(?:\n|(?<=[?.!])[ \t]+)[*#\s]*answer(?:\s+key)?[*\s]*:[*\t ]*", re.I)
_FINAL = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)\s*\.?")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_ANNOTATION = re.compile(r"<<[^<>]*>>")
# what one round says (per batch, summed): the student on the set, on the seeds, on the held-out split, and what
# the teacher and the solver made of the wrong seeds
ROUND_COUNTERS = ("student_total", "student_correct", "seed_total", "seed_correct", "wrong_seeds",
                  "augmented_total", "augmented_correct", "wrong_augmented", "teacher_asked", "teacher_items",
                  "solver_verified")


class Templates(BaseModel):
    """Prompt template per step: ``llm2llm/<name>.v<N>`` under prompts/, or a path to your own YAML file."""

    model_config = ConfigDict(extra="forbid")

    student: str = "llm2llm/student.v1"
    teacher: str = "llm2llm/teacher.v1"
    solve: str = "llm2llm/solve.v1"


class Params(LLMParams):
    per_wrong_seed: int = Field(1, ge=1, le=64, description="new problems per wrong original seed (paper: 1)")
    student_samples: int = Field(1, ge=1, le=64, description="student answers per item (its pass rate)")
    wrong_below: float = Field(
        0.5, gt=0, le=1, description="an item is wrong when the student's pass rate is below this"
    )
    student_temperature: float = Field(0.7, ge=0, le=2, description="0: greedy (paper: 0.7, top_p 0.9)")
    student_top_p: float = Field(0.9, gt=0, le=1)
    student_max_tokens: int = Field(512, ge=16)
    teacher_temperature: float = Field(1.0, ge=0, le=2)
    teacher_top_p: float = Field(1.0, gt=0, le=1)
    teacher_max_tokens: int = Field(512, ge=16)
    max_words: int = Field(100, ge=10, description="a new question longer than this is rejected (paper: 100)")
    solver_samples: int = Field(2, ge=1, le=64)
    min_agree: int | float = Field(
        0.5, description="solver samples that must reach the teacher's answer: a count or a share of those asked"
    )
    solver_temperature: float = Field(0.7, ge=0, le=2)
    solver_max_tokens: int = Field(512, ge=16)
    students: list[str] = Field(
        default_factory=list, description="one recipe model per round for the student (the last one repeats)"
    )
    pause_for_student: bool = Field(
        False, description="from round 2, the build waits for the student trained on the rounds so far"
    )
    held_out: str | None = Field(
        None, description="GSM8K-format JSONL the student is also graded on every round (never augmented)"
    )
    held_out_limit: int = Field(50, ge=1)
    templates: Templates = Field(default_factory=Templates)

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        if self.students and self.pause_for_student:
            raise ValueError("give either students (one per round) or pause_for_student, not both")
        if isinstance(self.min_agree, float) and not 0 < self.min_agree <= 1:
            raise ValueError(f"min_agree as a fraction must be in (0, 1], got {self.min_agree}")
        if isinstance(self.min_agree, int) and not 1 <= self.min_agree <= self.solver_samples:
            raise ValueError(f"min_agree as a count must be in 1..solver_samples, got {self.min_agree}")
        return self

    def needed_votes(self) -> int:
        if isinstance(self.min_agree, int):
            return self.min_agree
        return max(1, math.ceil(self.min_agree * self.solver_samples - 1e-9))


def round_roles(params: Params, round: int) -> dict[str, str | RoundInput]:
    """The student of ``round``: a recipe model from ``students``, one the user gives (``pause_for_student``,
    from round 2), or the recipe's (no entry)."""
    if params.students:
        return {"student": params.students[min(round, len(params.students)) - 1]}
    if params.pause_for_student and round > 1:
        return {"student": RoundInput("the path or served name of the student trained on the rounds so far")}
    return {}


# ------------------------------------------------------------------------------------------------ candidates


@dataclass
class Item(Candidate):
    """An item of the set (or of the held-out split) the student answers."""

    gold: str = ""
    correct: int = 0
    asked: int = 0

    @property
    def pass_rate(self) -> float:
        return self.correct / self.asked if self.asked else 0.0


@dataclass
class NewItem(Candidate):
    """A new problem the teacher writes from a wrong seed, on its way to the solver."""

    index: int = 0
    pass_rate: float = 0.0
    question: str | None = None
    solution: str | None = None
    answer: str | None = None
    verdict: dict[str, Any] | None = None
    samples: list[str | None] = field(default_factory=list)


def parse_new_item(text: str) -> tuple[str, str, str] | str:
    """(question, solution ending ``#### N``, N) from the teacher's text, or the reason it is unusable."""
    start = _QUESTION.search(text)
    if start is None:
        return "unparsed"
    rest = text[start.end():]
    split = _ANSWER.search(rest)
    if split is None:
        return "no_answer_part"
    question = " ".join(rest[: split.start()].split())
    work = rest[split.end():]
    more = _QUESTION.search(work)  # a second problem: only the first is used
    work = work[: more.start()] if more else work
    final = _FINAL.search(work)
    if final is None:
        return "no_final_answer"
    answer = final.group(1).replace(",", "")
    if not _NUMBER.fullmatch(answer):
        return "answer_not_numeric"
    calculation = work[: final.start()].strip()
    return question, (calculation + "\n" if calculation else "") + f"#### {answer}", answer


def _teacher_check(params: Params):  # noqa: ANN202 - a Parse for LLMStep
    def check(cand: NewItem, text: str, finish: str) -> str | None:
        if finish == "length":
            return "teacher_truncated"
        parsed = parse_new_item(text)
        if isinstance(parsed, str):
            return f"teacher_{parsed}"
        question, solution, answer = parsed
        if len(question.split()) > params.max_words:
            return "teacher_over_max_words"
        problems = question_problems(question, source=cand.parent["question"], answer=answer)
        if problems:
            return f"teacher_{problems[0]}"
        problems = solution_problems(solution, question=question)
        return f"teacher_solution_{problems[0]}" if problems else None

    return check


def _solver_check(cand: NewItem, text: str, finish: str) -> str | None:
    if finish == "length":
        return "solver_truncated"
    return "solver_no_answer" if extract_answer(text) is None else None


# ------------------------------------------------------------------------------------------------ held-out split


@lru_cache(maxsize=8)
def _read_held_out(path: Path, mtime_ns: int, limit: int) -> tuple[dict[str, Any], ...]:
    from pipeline.io.seeds import SeedSpec, load_seeds

    spec = SeedSpec(format="gsm8k", path=str(path), split="held_out", limit=limit)
    return tuple(load_seeds(spec, base_dir=path.parent))


def held_out_items(params: Params, ctx: StageContext) -> list[dict[str, Any]]:
    """The held-out split (a path relative to the working directory or to mathaug's data folder)."""
    if not params.held_out:
        return []
    path = Path(params.held_out).expanduser()
    if not path.exists() and not path.is_absolute() and (ctx.data_dir / path).exists():
        path = ctx.data_dir / path
    if not path.is_file():
        raise FileNotFoundError(f"llm2llm held_out: no such file {path}")
    return list(_read_held_out(path.resolve(), path.stat().st_mtime_ns, params.held_out_limit))


# ------------------------------------------------------------------------------------------------ the stage


def _grade(step: LLMStep[Item], items: list[Item], params: Params, ctx: StageContext) -> list[Item]:
    """The student's answers to ``items``; the items it answered (request errors are rejected, not graded)."""
    comps = step(items, lambda c: {"question": c.parent["question"]})
    graded = []
    for item, comp in zip(items, comps, strict=True):
        if not comp.ok:
            ctx.reject("student_request_error", detail=comp.error or "")
            continue
        item.asked = params.student_samples
        item.correct = sum(
            1 for text in comp.texts[: item.asked] if (a := extract_answer(text)) is not None and answers_match(a, item.gold)
        )
        graded.append(item)
    return graded


def run(records: list[dict[str, Any]], params: Params, ctx: StageContext) -> list[dict[str, Any]]:
    stage = ctx.stage
    sampling = {"temperature": params.student_temperature, "top_p": params.student_top_p,
                "max_tokens": params.student_max_tokens}
    student: LLMStep[Item] = LLMStep(ctx, "student", params.templates.student, "student",
                                     n=params.student_samples, **sampling)
    for key in ROUND_COUNTERS:  # every round's table has every column, zeros included
        ctx.funnel.add(stage, key, 0)
    items = []
    for rec in records:
        ctx.funnel.add(stage, "in")
        if not rec.get("answer"):
            ctx.reject("no_gold")
            continue
        items.append(Item(parent=rec, slot=stable_slot(rec), seed=ctx.rng(rec["id"], "student").getrandbits(31),
                          gold=rec["answer"]))
    wrong_seeds: list[Item] = []
    for item in _grade(student, items, params, ctx):
        is_seed = item.parent.get("method") == "seed"
        right = item.pass_rate >= params.wrong_below
        ctx.funnel.add(stage, "student_total")
        ctx.funnel.add(stage, "student_correct", int(right))
        ctx.funnel.add(stage, "seed_total" if is_seed else "augmented_total")
        ctx.funnel.add(stage, "seed_correct" if is_seed else "augmented_correct", int(right))
        if not right:
            ctx.funnel.add(stage, "wrong_seeds" if is_seed else "wrong_augmented")
            if is_seed:  # the paper's rule: augmented items are never augmented again
                wrong_seeds.append(item)
    if ctx.batch == 0:  # once per round, whatever the batch size
        held = [Item(parent=rec, slot=f"held_out|{rec['id']}", seed=ctx.rng(rec["id"], "held_out").getrandbits(31),
                     gold=rec["answer"]) for rec in held_out_items(params, ctx)]
        for item in _grade(student, held, params, ctx):
            ctx.funnel.add(stage, "held_out_total")
            ctx.funnel.add(stage, "held_out_correct", int(item.pass_rate >= params.wrong_below))
    out = _augment(wrong_seeds, records, params, ctx, student)
    ctx.advance(len(records))
    return out


def _augment(
    wrong: list[Item], records: list[dict[str, Any]], params: Params, ctx: StageContext, student: LLMStep[Item]
) -> list[dict[str, Any]]:
    """New verified problems from the wrong seeds: teacher, gates, dedup against the set, solver agreement."""
    stage = ctx.stage
    teacher: LLMStep[NewItem] = LLMStep(
        ctx, "teacher", params.templates.teacher, "teacher", reasks=params.reasks,
        temperature=params.teacher_temperature, top_p=params.teacher_top_p, max_tokens=params.teacher_max_tokens)
    solver: LLMStep[NewItem] = LLMStep(
        ctx, "solve", params.templates.solve, "solver", reasks=params.reasks, n=params.solver_samples,
        temperature=params.solver_temperature, top_p=params.teacher_top_p, max_tokens=params.solver_max_tokens)
    steps: dict[str, LLMStep[Any]] = {"student": student, "teacher": teacher, "solve": solver}
    cands = []
    for item in wrong:
        rng = ctx.rng(item.parent["id"], "teacher")
        for j in range(params.per_wrong_seed):
            cands.append(NewItem(parent=item.parent, slot=f"{item.slot}|{j}", seed=rng.getrandbits(31), index=j,
                                 pass_rate=item.pass_rate))
            cands[-1].used.append(("student", "student"))
    ctx.funnel.add(stage, "teacher_asked", len(cands))
    seen = {exact_key(rec["question"]) for rec in records if rec.get("question")}
    live: list[NewItem] = []
    answer_key = lambda c: _ANNOTATION.sub("", c.parent.get("solution") or f"#### {c.parent['answer']}")  # noqa: E731
    for cand, comp in zip(cands, teacher(cands, lambda c: {"question": c.parent["question"],
                                                             "solution": answer_key(c)}, _teacher_check(params)),
                          strict=True):
        if not comp.ok:
            cand.fail("teacher_request_error", comp.error or "")
        elif comp.problems and comp.problems[0] is not None:
            cand.fail(comp.problems[0], comp.texts[0][:2000])
        else:
            parsed = parse_new_item(comp.texts[0])
            assert not isinstance(parsed, str)  # the check accepted it
            cand.question, cand.solution, cand.answer = parsed
            ctx.funnel.add(stage, "teacher_items")
            key = exact_key(cand.question)
            if key in seen:
                cand.fail("duplicate_question", "the same question (normalised) is in the set or was just written")
            else:
                seen.add(key)
                live.append(cand)
    need = params.needed_votes()
    for cand, comp in zip(live, solver(live, lambda c: {"question": c.question}, _solver_check), strict=True):
        if not comp.ok:
            cand.fail("solver_request_error", comp.error or "")
            continue
        cand.samples = usable_texts(comp)
        answers = [extract_answer(t) if t else None for t in cand.samples][: params.solver_samples]
        asked, received, agreeing = votes(answers, cand.answer, params.solver_samples)
        detail = (f"{agreeing}/{asked} solver samples reach the teacher's answer {cand.answer!r} "
                  f"({received} answered; {need} needed)")
        cand.verdict = {"status": "verified" if agreeing >= need else "failed", "method": "agreement",
                        "votes": agreeing, "samples": asked, "detail": detail}
        if agreeing < need:
            cand.fail("solver_disagrees", detail)
        else:
            ctx.funnel.add(stage, "solver_verified")
    out = []
    for cand in cands:
        if cand.reject is not None or cand.verdict is None:
            ctx.reject(cand.reject or "unverified", _rejected_row(cand, steps, ctx.round), cand.detail)
            continue
        out.append(_row(cand, params, ctx, steps))
        ctx.funnel.add(stage, "generated")
    return out


def _row(cand: NewItem, params: Params, ctx: StageContext, steps: dict[str, LLMStep[Any]]) -> dict[str, Any]:
    method_params = params.model_dump(mode="json")
    method_params.update(version=VERSION, index=cand.index, student_pass_rate=round(cand.pass_rate, 4))
    return derive(cand.parent, question=cand.question, solution=cand.solution, answer=cand.answer, method=NAME,
                  method_params=method_params, verification=cand.verdict,
                  generator=generator(cand, steps, main_role="teacher"), run_id=ctx.run_id or None, round=ctx.round)


def _rejected_row(cand: NewItem, steps: dict[str, LLMStep[Any]], round: int | None) -> dict[str, Any]:
    """What a thrown-away new problem got to, for the dropped table (the teacher's raw text when unparsable)."""
    return make_record(
        question=cand.question or cand.detail or "", solution=cand.solution, answer=cand.answer, method=NAME,
        source=cand.parent.get("source") if cand.parent else None,
        parent_ids=[cand.parent["id"]] if cand.parent and cand.parent.get("id") else [],
        verification=cand.verdict or {"status": "failed", "detail": cand.detail},
        generator=generator(cand, steps, main_role="teacher"), round=round,
    )
