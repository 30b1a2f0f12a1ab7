"""Persona stage (methods.md §1): seed problems retold through personas, solved and kept only when verified.

``mode: rewrite`` (PersonaMath): for each seed, draw personas from a bank, rewrite the problem through each
persona's context keeping every quantity and the answer, have the teacher solve the rewrite ``samples`` times
(step by step, final ``\\boxed{}``) and keep it when at least ``min_agree`` of the samples asked reach the seed's
gold answer. For rewrites the teacher got wrong, an optional reflection pass shows the wrong solution and says
only that its answer is wrong (never the gold): a corrected solution that reaches the gold was found without
seeing it, so matching the gold is an independent check.

``mode: persona_hub`` (PersonaHub): a new problem from a persona alone, solved ``samples`` times and kept only when
at least ``min_agree`` of the samples asked agree; the agreed answer is the row's pseudo-gold, its votes recorded.

Every rewritten question passes the shared question gates (``pipeline.quality``: asks something, no leaked
answer or worked solution, every quantity kept, not a near-copy) and every kept solution the solution gates (one
committed answer, real reasoning). Every call goes through the shared ``LLMStep``: one batched request per step,
seeds from ``ctx.rng(record id)``, so reruns hit the request cache.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.quality import agreement, numbers_in, question_problems, solution_problems, votes  # noqa: F401 - numbers_in re-exported
from pipeline.records import derive, make_record
from pipeline.stages import StageContext
from pipeline.stages.llm_step import Candidate, LLMParams, LLMStep, generator, stable_slot, usable_texts
from pipeline.verify import answers_match, extract_answer

NAME = "persona"
VERSION = "3"
ROLES = {"teacher": "rewrites or invents problems and solves them"}
OUTPUT = "rows"
VERIFIER = "gold (rewrite) / majority (persona_hub)"

SHIPPED_BANKS = {
    "occupations": "personas/occupations.jsonl",
    "personahub": "personas/personahub_sample.jsonl",
}
_PREAMBLE = re.compile(
    r"^\s*(?:\*\*)?(?:rewritten problem|new problem|problem|math problem)\s*:\s*(?:\*\*)?\s*", re.I
)


class Templates(BaseModel):
    """Prompt template per step: ``<stage>/<name>.v<N>`` under prompts/, or a path to your own YAML file."""

    model_config = ConfigDict(extra="forbid")

    rewrite: str = "persona/rewrite.v1"
    solve: str = "persona/solve.v1"
    reflect: str = "persona/reflect.v2"
    synthesize: str = "persona/synthesize.v1"


class Params(LLMParams):
    model: str = Field("teacher", description="the teacher's name under the recipe's `models:` (or stage models:)")
    mode: Literal["rewrite", "persona_hub"] = "rewrite"
    personas: list[str] = Field(
        default_factory=lambda: ["occupations"],
        min_length=1,
        description="persona banks: 'occupations' (ISCO-08, default), 'personahub' (CC BY-NC-SA), or file paths",
    )
    personas_per_seed: int = Field(2, ge=1, le=1000)
    samples: int = Field(4, ge=1, le=256, description="k solutions sampled per problem")
    min_agree: int | float = Field(
        0.5, description="samples that must agree: a count (2) or a fraction of the samples asked (0.5)"
    )
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(1024, ge=16, description="per solution (solve and reflect)")
    rewrite_temperature: float = Field(0.7, ge=0, le=2)
    rewrite_max_tokens: int = Field(512, ge=16, description="per rewritten or synthesized problem")
    reflection: bool = Field(
        True, description="re-ask rewrites solved wrongly, saying the answer is wrong but not what it should be"
    )
    reflection_samples: int = Field(2, ge=1, le=64)
    check_quantities: bool = Field(True, description="reject rewrites that drop a quantity of the seed")
    keep_failed: bool = Field(False, description="keep unverified rewrites with status 'failed'")
    templates: Templates = Field(default_factory=Templates)

    @model_validator(mode="after")
    def _agreement(self) -> Params:
        if isinstance(self.min_agree, float) and not 0 < self.min_agree <= 1:
            raise ValueError(f"min_agree as a fraction must be in (0, 1], got {self.min_agree}")
        if isinstance(self.min_agree, int) and not 1 <= self.min_agree <= self.samples:
            raise ValueError(
                f"min_agree as a count must be in 1..samples ({self.samples}), got {self.min_agree}"
            )
        return self


# ------------------------------------------------------------------------------------------------ persona banks


def _bank_path(spec: str, data_dir: Path) -> Path:
    if spec in SHIPPED_BANKS:
        return data_dir / SHIPPED_BANKS[spec]
    path = Path(spec).expanduser()
    if not path.exists() and not path.is_absolute() and (data_dir / path).exists():
        path = data_dir / path
    return path


@lru_cache(maxsize=32)
def _read_bank(path: Path, mtime_ns: int) -> tuple[str, ...]:
    opener = gzip.open if path.suffix == ".gz" else open
    personas: list[str] = []
    with opener(path, "rt", encoding="utf-8") as fh:
        if path.name.endswith((".jsonl", ".jsonl.gz", ".json")):
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
                text = row.get("persona") or row.get("input persona") if isinstance(row, dict) else None
                if not isinstance(text, str) or not text.strip():
                    raise ValueError(f"{path}:{lineno}: needs a non-empty 'persona' string")
                personas.append(" ".join(text.split()))
        else:
            personas = [" ".join(line.split()) for line in fh if line.strip()]
    return tuple(personas)


def load_personas(specs: list[str], data_dir: Path) -> list[str]:
    """Personas from the named banks / files, in order, each once."""
    out: list[str] = []
    for spec in specs:
        path = _bank_path(spec, Path(data_dir))
        if not path.is_file():
            raise FileNotFoundError(
                f"persona bank {spec!r}: no such file {path} (use {sorted(SHIPPED_BANKS)} or a path to a .jsonl, "
                ".jsonl.gz or .txt file)"
            )
        out.extend(_read_bank(path.resolve(), path.stat().st_mtime_ns))
    unique = list(dict.fromkeys(out))
    if not unique:
        raise ValueError(f"persona banks {specs} are empty")
    return unique


# ------------------------------------------------------------------------------------------------ helpers


def clean_problem(text: str) -> str:
    """The problem text without a leading ``Rewritten problem:`` / ``Math problem:`` label."""
    return _PREAMBLE.sub("", text.strip(), count=1).strip()


@dataclass
class PersonaCandidate(Candidate):
    """One (seed, persona) pair on its way through rewrite -> solve -> (reflect)."""

    persona: str = ""
    index: int = 0
    gold: str | None = None
    question: str | None = None
    samples: list[str | None] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    verdict: dict[str, Any] | None = None
    solution: str | None = None
    answer: str | None = None


class _Steps:
    """The stage's four LLM steps, built once per batch."""

    def __init__(self, params: Params, ctx: StageContext) -> None:
        t, p = params.templates, params
        problem = {"temperature": p.rewrite_temperature, "top_p": p.top_p, "max_tokens": p.rewrite_max_tokens}
        solve = {"temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens}
        self.params, self.ctx = params, ctx
        self.by_name: dict[str, LLMStep[PersonaCandidate]] = {
            "rewrite": LLMStep(ctx, "rewrite", t.rewrite, reasks=p.reasks, **problem),
            "synthesize": LLMStep(ctx, "synthesize", t.synthesize, reasks=p.reasks, **problem),
            "solve": LLMStep(ctx, "solve", t.solve, reasks=p.reasks, n=p.samples, **solve),
            "reflect": LLMStep(ctx, "reflect", t.reflect, reasks=p.reasks, n=p.reflection_samples, **solve),
        }

    def __getitem__(self, name: str) -> LLMStep[PersonaCandidate]:
        return self.by_name[name]


def _problem_check(step: str, params: Params):  # noqa: ANN202 - a Parse for LLMStep
    def check(cand: PersonaCandidate, text: str, finish: str) -> str | None:
        if finish == "length":
            return f"{step}_truncated"
        problem = clean_problem(text)
        if not problem:
            return f"{step}_empty"
        keeps = step == "rewrite"
        problems = question_problems(
            problem,
            source=cand.parent["question"] if keeps else None,
            answer=cand.gold if keeps else None,
            keeps_quantities=keeps and params.check_quantities,
        )
        if not problems and keeps and not persona_visible(problem, cand.persona, cand.parent["question"]):
            problems = ["persona_missing"]
        return f"{step}_{problems[0]}" if problems else None

    return check


_WORD = re.compile(r"[a-z]{4,}")
_COMMON = frozenset(
    "that this with from they them their there have what when which while where will would could should about "
    "each every some many much more most into over also other than then these those just like work works working "
    "person people someone who whose your daily life".split()
)


def persona_visible(rewrite: str, persona: str, source: str) -> bool:
    """The persona shows in the rewrite: a content word of the persona that the source lacks appears in it.

    A real model often "rewrites" by paraphrasing the seed and ignoring the persona (seen with a 0.5B model: 8 of
    54 rewrites passed every other gate with no trace of their persona); such a row adds no diversity."""
    own = {w for w in _WORD.findall(persona.lower()) if w not in _COMMON}
    stems = {w[:5] for w in own} - {w[:5] for w in _WORD.findall(source.lower())}
    return any(w[:5] in stems for w in _WORD.findall(rewrite.lower()))


def _solution_check(step: str):  # noqa: ANN202 - a Parse for LLMStep
    def check(cand: PersonaCandidate, text: str, finish: str) -> str | None:
        if finish == "length":
            return f"{step}_truncated"
        if extract_answer(text) is None:
            return f"{step}_no_answer"
        problems = solution_problems(text, question=cand.question)
        return f"{step}_{problems[0]}" if problems else None

    return check


def _answers(texts: list[str | None], asked: int) -> list[str | None]:
    """Final answers of the samples that came back (None for unusable ones); ``agreement`` counts the samples
    that never came against agreement, as a share of the ``asked``."""
    return [extract_answer(t) if t is not None else None for t in texts][:asked]


# ------------------------------------------------------------------------------------------------ the stage


def run(records: list[dict[str, Any]], params: Params, ctx: StageContext) -> list[dict[str, Any]]:
    steps = _Steps(params, ctx)
    bank = load_personas(params.personas, ctx.data_dir)
    cands: list[PersonaCandidate] = []
    for rec in records:
        ctx.funnel.add(ctx.stage, "in")
        gold = rec.get("answer")
        if params.mode == "rewrite" and not gold:
            ctx.reject("no_gold")
            continue
        rng = ctx.rng(rec["id"])
        stable = stable_slot(rec)
        for j, persona in enumerate(rng.sample(bank, min(params.personas_per_seed, len(bank)))):
            cands.append(
                PersonaCandidate(
                    parent=rec, persona=persona, index=j, slot=f"{stable}|{j}", seed=rng.getrandbits(31), gold=gold
                )
            )
    if params.mode == "rewrite":
        _rewrite(cands, steps)
    else:
        _synthesize(cands, steps)

    out: list[dict[str, Any]] = []
    for cand in cands:
        if cand.verdict is None or (cand.verdict["status"] != "verified" and not params.keep_failed):
            ctx.reject(cand.reject or "unverified", _rejected_row(cand, steps), cand.detail)
            continue
        out.append(_row(cand, steps))
        ctx.funnel.add(ctx.stage, "generated")
    ctx.advance(len(records))
    return out


def _ask_problems(steps: _Steps, step: str, cands: list[PersonaCandidate], variables) -> list[PersonaCandidate]:  # noqa: ANN001
    """One problem per candidate (rewrite or synthesize); the candidates whose problem passed the gates."""
    comps = steps[step](cands, variables, _problem_check(step, steps.params))
    live = []
    for cand, comp in zip(cands, comps, strict=True):
        if not comp.ok:
            cand.fail("request_error", comp.error or "")
        elif comp.problems[0] is not None:
            cand.fail(comp.problems[0], comp.texts[0][:2000])
        else:
            cand.question = clean_problem(comp.texts[0])
            live.append(cand)
    return live


def _solve(steps: _Steps, live: list[PersonaCandidate]) -> list[tuple[PersonaCandidate, str | None]]:
    """``samples`` solutions per candidate; each answered candidate with its agreed answer (None: no agreement)."""
    p = steps.params
    comps = steps["solve"](live, lambda c: {"question": c.question}, _solution_check("solve"))
    solved = []
    for cand, comp in zip(live, comps, strict=True):
        if not comp.ok:
            cand.fail("request_error", comp.error or "")
            continue
        cand.samples = usable_texts(comp)
        cand.answers = _answers(cand.samples, p.samples)
        solved.append((cand, agreement(cand.answers, p.samples, p.min_agree)))
    return solved


def _solution_with(cand: PersonaCandidate, answer: str) -> str:
    """The first sampled solution whose answer matches ``answer`` (one exists: ``answer`` came from them)."""
    return next(
        t for t, a in zip(cand.samples, cand.answers, strict=False) if t and a and answers_match(a, answer)
    )


def _verdict(method: str, answers: list[str | None], target: str, asked: int, detail: str) -> dict[str, Any]:
    _, received, agreeing = votes(answers, target, asked)
    answered = sum(a is not None for a in answers)
    return {"status": "verified", "method": method, "votes": agreeing, "samples": asked,
            "detail": f"{detail} ({agreeing}/{asked} asked agree; {received} received, {answered} answered)"}


def _rewrite(cands: list[PersonaCandidate], steps: _Steps) -> None:
    p = steps.params
    live = _ask_problems(steps, "rewrite", cands, lambda c: {"persona": c.persona, "question": c.parent["question"]})
    wrong: list[PersonaCandidate] = []
    for cand, top in _solve(steps, live):
        if top is not None and answers_match(top, cand.gold):
            cand.solution = _solution_with(cand, cand.gold)
            cand.verdict = _verdict("majority", cand.answers, cand.gold, p.samples,
                                    f"agreed answer {top!r} matches gold {cand.gold!r}")
            continue
        _, received, agreeing = votes(cand.answers, top, p.samples) if top else (p.samples, 0, 0)
        detail = (
            f"no answer reached min_agree={p.min_agree} of {p.samples} asked "
            f"({sum(a is not None for a in cand.answers)} answered)"
            if top is None
            else f"agreed answer {top!r} ({agreeing}/{p.samples}) != gold {cand.gold!r}"
        )
        cand.fail("no_majority" if top is None else "wrong_answer", detail)
        shown = _wrong_solution(cand, top)
        cand.verdict = {"status": "failed", "method": "majority", "votes": agreeing, "samples": p.samples,
                        "detail": detail}
        cand.solution = shown
        if p.reflection and shown:
            wrong.append(cand)
    if not wrong:
        return
    # the teacher sees its wrong solution and that it is wrong, never the gold: reaching the gold is then evidence
    comps = steps["reflect"](wrong, lambda c: {"question": c.question, "wrong_solution": c.solution},
                             _solution_check("reflect"))
    for cand, comp in zip(wrong, comps, strict=True):
        texts = usable_texts(comp) if comp.ok else []
        answers = _answers(texts, p.reflection_samples)
        fixed = [t for t, a in zip(texts, answers, strict=False) if t and a and answers_match(a, cand.gold)]
        if not fixed:
            cand.fail("reflection_failed", f"{cand.detail}; reflection: 0/{p.reflection_samples} reach the gold")
            cand.verdict["detail"] = cand.detail
            continue
        cand.solution = fixed[0]
        cand.reject = None
        cand.verdict = _verdict("reflection_blind", answers, cand.gold, p.reflection_samples,
                                f"{cand.verdict['detail']}; reflection without the gold reached it")


def _wrong_solution(cand: PersonaCandidate, top: str | None) -> str | None:
    """The solution shown to the reflection pass: one with the (wrong) agreed answer, else any answered one."""
    pairs = [(t, a) for t, a in zip(cand.samples, cand.answers, strict=False) if t is not None]
    if top is not None:
        for text, ans in pairs:
            if ans is not None and answers_match(ans, top):
                return text
    return next((t for t, a in pairs if a is not None), None)


def _synthesize(cands: list[PersonaCandidate], steps: _Steps) -> None:
    p = steps.params
    live = _ask_problems(steps, "synthesize", cands, lambda c: {"persona": c.persona})
    for cand, top in _solve(steps, live):
        if top is None:
            cand.fail("no_agreement", f"no answer reached min_agree={p.min_agree} of {p.samples} asked")
            continue
        cand.answer = top
        cand.solution = _solution_with(cand, top)
        cand.verdict = _verdict("majority", cand.answers, top, p.samples,
                                f"pseudo-gold {top!r} (min_agree={p.min_agree}; no gold)")


def _row(cand: PersonaCandidate, steps: _Steps) -> dict[str, Any]:
    params = steps.params.model_dump(mode="json")
    params.update(version=VERSION, persona_index=cand.index)
    run_id = steps.ctx.run_id or cand.parent.get("run_id")
    fields = {"method": NAME, "persona": cand.persona, "method_params": params, "verification": cand.verdict,
              "generator": generator(cand, steps.by_name), "run_id": run_id, "round": steps.ctx.round}
    if steps.params.mode == "rewrite":
        return derive(cand.parent, question=cand.question, solution=cand.solution, answer=cand.gold, **fields)
    seed_id = "persona:" + hashlib.sha256(cand.persona.encode()).hexdigest()[:12]
    return make_record(question=cand.question, solution=cand.solution, answer=cand.answer,
                       source={"dataset": "persona_hub", "split": "synthetic", "seed_id": seed_id, "subject": None},
                       **fields)


def _rejected_row(cand: PersonaCandidate, steps: _Steps) -> dict[str, Any]:
    """What a thrown-away candidate got to, for the dropped table (question or problem text, last solution)."""
    text = cand.question or (cand.detail if cand.reject and cand.reject.startswith(("rewrite", "synth")) else "")
    return make_record(
        question=text or "", solution=cand.solution, answer=cand.gold or cand.answer, method=NAME,
        source=cand.parent.get("source") if cand.parent else None,
        parent_ids=[cand.parent["id"]] if cand.parent and cand.parent.get("id") else [],
        persona=cand.persona, verification=cand.verdict or {"status": "failed", "detail": cand.detail},
        generator=generator(cand, steps.by_name), round=steps.ctx.round,
    )
