"""Persona stage (methods.md §1): seed problems retold through personas, solved and kept only when verified.

``mode: rewrite`` (PersonaMath): for each seed, draw personas from a bank, rewrite the problem through each
persona's context keeping every quantity and the answer, have the teacher solve the rewrite ``samples`` times
(step by step, final ``\\boxed{}``) and keep it when the majority answer matches the seed's gold answer. For
rewrites the teacher got wrong, an optional reflection pass shows the wrong solution and the gold answer and keeps
a corrected solution whose answer matches the gold.

``mode: persona_hub`` (PersonaHub): a new problem from a persona alone, solved ``samples`` times and kept only when
at least ``min_agree`` samples agree; the agreed answer is the row's pseudo-gold, its votes are recorded.

Every model call goes through one batched ``client.complete`` per step (all rows of the batch at once), so the
engine sees the whole batch; every request carries a seed drawn from ``ctx.rng(record id)``, so reruns ask the
same requests and hit the request cache.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from pipeline.llm.templates import PromptTemplate, load_template
from pipeline.llm.types import ChatRequest, Completion
from pipeline.records import derive, make_record
from pipeline.stages import StageContext
from pipeline.verify import answers_match, extract_answer, majority

NAME = "persona"
VERSION = "1"

SHIPPED_BANKS = {
    "occupations": "personas/occupations.jsonl",
    "personahub": "personas/personahub_sample.jsonl",
}
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_PREAMBLE = re.compile(
    r"^\s*(?:\*\*)?(?:rewritten problem|new problem|problem|math problem)\s*:\s*(?:\*\*)?\s*", re.I
)


class Templates(BaseModel):
    """Prompt template per step: ``<stage>/<name>.v<N>`` under prompts/, or a path to your own YAML file."""

    model_config = ConfigDict(extra="forbid")

    rewrite: str = "persona/rewrite.v1"
    solve: str = "persona/solve.v1"
    reflect: str = "persona/reflect.v1"
    synthesize: str = "persona/synthesize.v1"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("teacher", description="name of the teacher under the recipe's `models:`")
    mode: Literal["rewrite", "persona_hub"] = "rewrite"
    personas: list[str] = Field(
        default_factory=lambda: ["occupations"],
        min_length=1,
        description="persona banks: 'occupations' (ISCO-08, default), 'personahub' (CC BY-NC-SA), or file paths",
    )
    personas_per_seed: int = Field(2, ge=1, le=1000)
    samples: int = Field(4, ge=1, le=256, description="k solutions sampled per problem")
    min_agree: int | float = Field(
        0.5, description="samples that must agree: a count (2) or a fraction of `samples` (0.5)"
    )
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(1024, ge=16, description="per solution (solve and reflect)")
    rewrite_temperature: float = Field(0.7, ge=0, le=2)
    rewrite_max_tokens: int = Field(512, ge=16, description="per rewritten or synthesized problem")
    reflection: bool = Field(
        True, description="re-ask with the wrong solution and gold answer (rewrite mode)"
    )
    reflection_samples: int = Field(2, ge=1, le=64)
    reasks: int = Field(1, ge=0, le=5, description="re-asks for malformed samples (truncated, no answer)")
    check_quantities: bool = Field(True, description="reject rewrites that drop a number of the seed")
    keep_failed: bool = Field(False, description="keep unverified rewrites with status 'failed'")
    templates: Templates = Field(default_factory=Templates)

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "template_hashes" in data:  # a dumped Params validates again
            data = {k: v for k, v in data.items() if k != "template_hashes"}
        return data

    @model_validator(mode="after")
    def _agreement(self) -> Params:
        if isinstance(self.min_agree, float) and not 0 < self.min_agree <= 1:
            raise ValueError(f"min_agree as a fraction must be in (0, 1], got {self.min_agree}")
        if isinstance(self.min_agree, int) and not 1 <= self.min_agree <= self.samples:
            raise ValueError(
                f"min_agree as a count must be in 1..samples ({self.samples}), got {self.min_agree}"
            )
        return self

    @computed_field  # in model_dump, hence in the build's batch key: editing a template reruns this stage
    @property
    def template_hashes(self) -> dict[str, str]:
        return {step: load_template(ref).sha256[:16] for step, ref in self.templates.model_dump().items()}


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


def numbers_in(text: str) -> set[str]:
    """Numbers written in digits, thousands separators dropped (``1,200`` -> ``1200``)."""
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def clean_problem(text: str) -> str:
    """The problem text without a leading ``Rewritten problem:`` / ``Math problem:`` label."""
    return _PREAMBLE.sub("", text.strip(), count=1).strip()


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class Candidate:
    """One (seed, persona) pair on its way through rewrite -> solve -> (reflect)."""

    parent: dict[str, Any]
    persona: str
    index: int
    slot: str
    seed: int
    gold: str | None
    question: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    used: list[str] = field(default_factory=list)  # steps that ran: rewrite/synthesize, solve, reflect
    samples: list[str] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    verdict: dict[str, Any] | None = None
    solution: str | None = None
    answer: str | None = None
    reject: str | None = None

    def charge(self, completion: Completion) -> None:
        self.tokens_in += completion.prompt_tokens
        self.tokens_out += completion.completion_tokens


class _Steps:
    """Template + sampling per step, and the batched calls."""

    def __init__(self, params: Params, ctx: StageContext) -> None:
        if ctx.model is None:
            raise RuntimeError(
                "the persona stage needs a model: ctx.model is not set (does the recipe have models:?)"
            )
        self.params, self.ctx = params, ctx
        self.client = ctx.model(params.model)
        self.templates: dict[str, PromptTemplate] = {
            step: load_template(ref) for step, ref in params.templates.model_dump().items()
        }

    def sampling(self, step: str) -> dict[str, Any]:
        p = self.params
        if step in ("rewrite", "synthesize"):
            return {
                "n": 1,
                "temperature": p.rewrite_temperature,
                "top_p": p.top_p,
                "max_tokens": p.rewrite_max_tokens,
            }
        n = p.samples if step == "solve" else p.reflection_samples
        return {"n": n, "temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens}

    def ask(
        self,
        step: str,
        cands: list[Candidate],
        variables: Callable[[Candidate], dict[str, Any]],
        check: Callable[[Candidate, str, str], str | None],
    ) -> list[Completion]:
        tmpl = self.templates[step]
        requests = [
            ChatRequest(
                messages=tmpl.render(**variables(c)),
                seed=_seed(c.seed, step),
                template=tmpl.name,
                template_hash=tmpl.sha256,
                slot=f"{self.ctx.stage}|{step}|{c.slot}",
                **self.sampling(step),
            )
            for c in cands
        ]
        results = self.client.complete(
            requests,
            check=lambda i, text, finish: check(cands[i], text, finish),
            max_reasks=self.params.reasks,
        )
        for cand, comp in zip(cands, results, strict=True):
            cand.charge(comp)
            cand.used.append(step)
        return results


def _problem_check(step: str, quantities: bool) -> Callable[[Candidate, str, str], str | None]:
    def check(cand: Candidate, text: str, finish: str) -> str | None:
        if finish == "length":
            return f"{step}_truncated"
        problem = clean_problem(text)
        if not problem:
            return f"{step}_empty"
        if quantities and not numbers_in(cand.parent["question"]) <= numbers_in(problem):
            return f"{step}_lost_quantities"
        return None

    return check


def _solution_check(step: str) -> Callable[[Candidate, str, str], str | None]:
    def check(cand: Candidate, text: str, finish: str) -> str | None:
        if finish == "length":
            return f"{step}_truncated"
        if extract_answer(text) is None:
            return f"{step}_no_answer"
        return None

    return check


def _answers(comp: Completion) -> list[str | None]:
    """Final answers of the usable samples (None for malformed ones)."""
    problems = comp.problems or [None] * len(comp.texts)
    return [extract_answer(t) if p is None else None for t, p in zip(comp.texts, problems, strict=True)]


def _votes(answers: list[str | None], target: str) -> int:
    return sum(1 for a in answers if a is not None and answers_match(a, target))


# ------------------------------------------------------------------------------------------------ the stage


def run(records: list[dict[str, Any]], params: Params, ctx: StageContext) -> list[dict[str, Any]]:
    steps = _Steps(params, ctx)
    bank = load_personas(params.personas, ctx.data_dir)
    cands: list[Candidate] = []
    for rec in records:
        ctx.funnel.add(ctx.stage, "in")
        gold = rec.get("answer")
        if params.mode == "rewrite" and not gold:
            ctx.funnel.reject(ctx.stage, "no_gold")
            continue
        rng = ctx.rng(rec["id"])
        # what the requests are for, stable across edits of the seed text (explains cache misses only)
        seed_id = (rec.get("source") or {}).get("seed_id")
        stable = seed_id if seed_id and rec.get("method") == "seed" else rec["id"]
        for j, persona in enumerate(rng.sample(bank, min(params.personas_per_seed, len(bank)))):
            cands.append(
                Candidate(
                    parent=rec,
                    persona=persona,
                    index=j,
                    slot=f"{stable}|{j}",
                    seed=rng.getrandbits(31),
                    gold=gold,
                )
            )
    if params.mode == "rewrite":
        _rewrite(cands, steps)
    else:
        _synthesize(cands, steps)

    out: list[dict[str, Any]] = []
    for cand in cands:
        if cand.verdict is None or (cand.verdict["status"] != "verified" and not params.keep_failed):
            ctx.funnel.reject(ctx.stage, cand.reject or "unverified")
            continue
        out.append(_row(cand, steps))
        ctx.funnel.add(ctx.stage, "generated")
    ctx.advance(len(records))
    return out


def _ask_problems(
    steps: _Steps,
    step: str,
    cands: list[Candidate],
    variables: Callable[[Candidate], dict[str, Any]],
    check: Callable[[Candidate, str, str], str | None],
) -> list[Candidate]:
    """One problem per candidate (rewrite or synthesize); the candidates whose problem passed its check."""
    comps = steps.ask(step, cands, variables, check)
    live = []
    for cand, comp in zip(cands, comps, strict=True):
        if not comp.ok:
            cand.reject = "request_error"
        elif comp.problems[0] is not None:
            cand.reject = comp.problems[0]
        else:
            cand.question = clean_problem(comp.texts[0])
            live.append(cand)
    return live


def _solve(steps: _Steps, live: list[Candidate]) -> list[tuple[Candidate, str | None]]:
    """``samples`` solutions per candidate; each answered candidate with its majority answer (None: no majority)."""
    comps = steps.ask("solve", live, lambda c: {"question": c.question}, _solution_check("solve"))
    solved = []
    for cand, comp in zip(live, comps, strict=True):
        if not comp.ok:
            cand.reject = "request_error"
            continue
        cand.samples, cand.answers = list(comp.texts), _answers(comp)
        solved.append((cand, majority(cand.answers, steps.params.min_agree)))
    return solved


def _solution_with(cand: Candidate, answer: str) -> str:
    """The first sampled solution whose answer matches ``answer`` (one exists: ``answer`` came from them)."""
    return next(t for t, a in zip(cand.samples, cand.answers, strict=True) if a and answers_match(a, answer))


def _rewrite(cands: list[Candidate], steps: _Steps) -> None:
    p = steps.params
    live = _ask_problems(
        steps,
        "rewrite",
        cands,
        lambda c: {"persona": c.persona, "question": c.parent["question"]},
        _problem_check("rewrite", p.check_quantities),
    )
    if not live:
        return

    wrong: list[Candidate] = []
    for cand, top in _solve(steps, live):
        if top is not None and answers_match(top, cand.gold):
            votes = _votes(cand.answers, cand.gold)
            cand.solution = _solution_with(cand, cand.gold)
            cand.verdict = {
                "status": "verified",
                "method": "majority",
                "votes": votes,
                "samples": p.samples,
                "detail": f"majority answer {top!r} ({votes}/{p.samples}) matches gold {cand.gold!r}",
            }
            continue
        cand.reject = "no_majority" if top is None else "wrong_answer"
        detail = (
            f"no answer reached min_agree={p.min_agree} ({sum(a is not None for a in cand.answers)}/{p.samples} answered)"
            if top is None
            else f"majority answer {top!r} ({_votes(cand.answers, top)}/{p.samples}) != gold {cand.gold!r}"
        )
        shown = _wrong_solution(cand, top)
        cand.verdict = {
            "status": "failed",
            "method": "majority",
            "votes": _votes(cand.answers, top) if top else 0,
            "samples": p.samples,
            "detail": detail,
        }
        cand.solution = shown
        if p.reflection and shown:
            wrong.append(cand)
    if not wrong:
        return

    comps = steps.ask(
        "reflect",
        wrong,
        lambda c: {"question": c.question, "wrong_solution": c.solution, "gold": c.gold},
        _solution_check("reflect"),
    )
    for cand, comp in zip(wrong, comps, strict=True):
        answers = _answers(comp) if comp.ok else []
        fixed = [t for t, a in zip(comp.texts, answers, strict=False) if a and answers_match(a, cand.gold)]
        if not fixed:
            cand.reject = "reflection_failed"
            cand.verdict["detail"] += f"; reflection: 0/{p.reflection_samples} corrected"
            continue
        cand.solution = fixed[0]
        cand.reject = None
        cand.verdict = {
            "status": "verified",
            "method": "reflection",
            "votes": len(fixed),
            "samples": p.reflection_samples,
            "detail": f"{cand.verdict['detail']}; reflection: {len(fixed)}/{p.reflection_samples} match gold",
        }


def _wrong_solution(cand: Candidate, top: str | None) -> str | None:
    """The solution shown to the reflection pass: one with the (wrong) majority answer, else any answered one."""
    pairs = list(zip(cand.samples, cand.answers, strict=True))
    if top is not None:
        for text, ans in pairs:
            if ans is not None and answers_match(ans, top):
                return text
    return next((t for t, a in pairs if a is not None), None)


def _synthesize(cands: list[Candidate], steps: _Steps) -> None:
    p = steps.params
    live = _ask_problems(
        steps, "synthesize", cands, lambda c: {"persona": c.persona}, _problem_check("synthesize", quantities=False)
    )
    if not live:
        return
    for cand, top in _solve(steps, live):
        if top is None:
            cand.reject = "no_agreement"
            continue
        votes = _votes(cand.answers, top)
        cand.answer = top
        cand.solution = _solution_with(cand, top)
        cand.verdict = {
            "status": "verified",
            "method": "majority",
            "votes": votes,
            "samples": p.samples,
            "detail": f"pseudo-gold {top!r}: {votes}/{p.samples} samples agree (min_agree={p.min_agree}; no gold)",
        }


def _row(cand: Candidate, steps: _Steps) -> dict[str, Any]:
    used = [steps.templates[s] for s in cand.used]
    generator = {
        "model": steps.client.model,
        "revision": steps.client.revision,
        "sampling": json.dumps({s: steps.sampling(s) for s in cand.used}, sort_keys=True),
        "template": "+".join(t.name for t in used),
        "template_hash": hashlib.sha256("|".join(f"{t.name}:{t.sha256}" for t in used).encode()).hexdigest(),
        "tokens_in": cand.tokens_in,
        "tokens_out": cand.tokens_out,
    }
    params = steps.params.model_dump(mode="json")
    params.update(version=VERSION, persona_index=cand.index)
    run_id = steps.ctx.run_id or cand.parent.get("run_id")
    if steps.params.mode == "rewrite":
        return derive(
            cand.parent,
            question=cand.question,
            solution=cand.solution,
            answer=cand.gold,
            method=NAME,
            persona=cand.persona,
            method_params=params,
            verification=cand.verdict,
            generator=generator,
            run_id=run_id,
        )
    return make_record(
        question=cand.question,
        solution=cand.solution,
        answer=cand.answer,
        method=NAME,
        source={
            "dataset": "persona_hub",
            "split": "synthetic",
            "seed_id": "persona:" + hashlib.sha256(cand.persona.encode()).hexdigest()[:12],
            "subject": None,
        },
        persona=cand.persona,
        method_params=params,
        verification=cand.verdict,
        generator=generator,
        run_id=run_id,
    )
