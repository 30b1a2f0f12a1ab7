"""MathSmith stage (methods.md §4): new Olympiad-style problems forged from sampled concepts, kept by solver agreement.

No seed problem is rewritten. Each input row is only a trigger: it drives ``problems_per_input`` attempts (as
``persona_hub`` drives problems per seed), so ``--limit N`` caps the attempts at ``N * problems_per_input`` and
batches, resume, rounds and the request cache work as for every other stage. Per attempt:

1. **Concepts**: ``concepts_per_problem`` (5) concept records (name, explanation, category) drawn with
   ``ctx.rng`` from the concept banks (the shipped PlanetMath sample by default, or your own JSONL), optionally
   only from ``categories``.
2. **Problem**: the teacher writes ONE problem on a subset of them using at least two of the nine difficulty
   features, as ``<rationale>`` then ``<problem>``. A sample without both tags, claiming fewer than
   ``min_features`` features, or failing the shared question gates (``pipeline.quality``) is re-asked, then
   dropped with its reason.
3. **Answers by agreement**: the solver answers ``samples`` (6) times; the problem is kept when at least
   ``min_agree`` (3) of the samples ASKED agree (``pipeline.quality.agreement``: a sample the server never sent, or
   one the solution gates rejected, counts against). The kept solution is an agreeing sample (the shortest, or a
   seeded random one); the problem must not state the agreed answer, and an agreed yes/no or true/false is
   dropped (``yes_no_answer``: samples agree on it by chance, and the prompt asks for a number or expression).
4. **Difficulty**: the paper's reward signals per row, as compact JSON in ``difficulty``: ``r_len`` (mean solver
   tokens per sample / ``length_norm``), ``r_consist`` (agreeing share of the samples asked), ``r_format`` (0.7
   for both tags + 0.3 x the "Step k" score), ``score`` (r_format + 0.7 r_len + 0.3 r_consist) and
   ``solver_tokens``; ``min_difficulty: {r_len: 0.02}`` keeps only problems at or above each bound.

``mode: weakness`` (MathSmith's self-improvement): ``failures: PATH`` is a JSONL file of items a student got wrong,
each with its ``concepts`` (names looked up in the banks for their explanations, or ``{concept, explanation}``
records); the stage writes ``variants_per_failure`` new problems from each failure's own concepts. The failures
are handled by the stage's first batch (input rows are only its trigger), and the file's content is part of the
batch key.
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

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from pipeline.quality import agreement, guessable, question_problems, sample_answers, solution_problems, votes
from pipeline.records import make_record
from pipeline.stages import StageContext
from pipeline.stages.llm_step import Candidate, LLMParams, LLMStep, generator, stable_slot, usable_texts
from pipeline.verify import answers_match

NAME = "mathsmith"
VERSION = "2"
ROLES = {"teacher": "writes a problem from sampled concepts", "solver": "answers each problem `samples` times"}
OUTPUT = "rows"
VERIFIER = "majority"

SHIPPED_BANKS = {"planetmath": "concepts/planetmath_sample.jsonl"}
FEATURES = {
    "a": "multi-step reasoning",
    "b": "cross-topic integration",
    "c": "implicit or reverse logic",
    "d": "distractors",
    "e": "abstract modeling",
    "f": "multiple solution paths",
    "g": "advanced manipulation",
    "h": "extreme conditions",
    "i": "non-standard representation",
}
DIFFICULTY_SIGNALS = ("r_len", "r_consist", "r_format", "score", "solver_tokens")
# a rationale left open ends where the problem begins (small models often forget </rationale>)
_TAG = {"rationale": re.compile(r"<rationale>(.*?)(?:</rationale>|(?=<problem>))", re.S | re.I),
        "problem": re.compile(r"<problem>(.*?)</problem>", re.S | re.I)}
_FEATURES_LINE = re.compile(r"features?\s+used\s*:\s*(.+)", re.I)
_FEATURE_LETTER = re.compile(r"(?<![a-z])\(?([a-i])\)?(?![a-z])", re.I)
_STEP = re.compile(r"\bStep\s+\d+", re.I)


class Templates(BaseModel):
    """Prompt template per step: ``<stage>/<name>.v<N>`` under prompts/, or a path to your own YAML file."""

    model_config = ConfigDict(extra="forbid")

    generate: str = "mathsmith/generate.v1"
    solve: str = "mathsmith/solve.v1"


class Params(LLMParams):
    mode: Literal["concepts", "weakness"] = "concepts"
    concepts: list[str] = Field(
        default_factory=lambda: ["planetmath"], min_length=1,
        description="concept banks: 'planetmath' (shipped sample, CC BY-SA 3.0) or paths to .jsonl/.jsonl.gz files "
        "with concept, explanation and category (or area) fields",
    )
    categories: list[str] = Field(
        default_factory=list, description="draw only concepts whose category contains one of these (case-insensitive)"
    )
    concepts_per_problem: int = Field(5, ge=1, le=20)
    problems_per_input: int = Field(1, ge=1, le=1000, description="attempts per input row (the row is a trigger)")
    failures: str | None = Field(None, description="mode weakness: JSONL of wrong items with their `concepts`")
    variants_per_failure: int = Field(1, ge=1, le=100)
    explanation_chars: int = Field(600, ge=0, description="each concept's explanation is cut to this in the prompt")
    min_features: int = Field(2, ge=0, le=9, description="difficulty features the rationale must claim")
    samples: int = Field(6, ge=1, le=64, description="solver answers per problem")
    min_agree: int | float = Field(3, description="agreeing samples needed: a count, or a share of samples asked")
    keep_solution: Literal["shortest", "random"] = "shortest"
    min_difficulty: dict[str, float] = Field(
        default_factory=dict, description=f"keep a problem only when each signal is at least this ({DIFFICULTY_SIGNALS})"
    )
    length_norm: int = Field(32768, ge=1, description="r_len = mean solver tokens / length_norm (the paper's 32,768)")
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(0.8, gt=0, le=1)
    max_tokens: int = Field(2048, ge=16, description="per generated rationale + problem")
    solve_temperature: float = Field(0.6, ge=0, le=2)
    solve_top_p: float = Field(0.95, gt=0, le=1)
    solve_max_tokens: int = Field(2048, ge=16, description="per solver sample")
    templates: Templates = Field(default_factory=Templates)

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        if isinstance(self.min_agree, float) and not 0 < self.min_agree <= 1:
            raise ValueError(f"min_agree as a share must be in (0, 1], got {self.min_agree}")
        if isinstance(self.min_agree, int) and not 1 <= self.min_agree <= self.samples:
            raise ValueError(f"min_agree as a count must be in 1..samples ({self.samples}), got {self.min_agree}")
        unknown = sorted(set(self.min_difficulty) - set(DIFFICULTY_SIGNALS))
        if unknown:
            raise ValueError(f"min_difficulty: unknown signals {unknown}; known: {list(DIFFICULTY_SIGNALS)}")
        if (self.mode == "weakness") != (self.failures is not None):
            raise ValueError("mode: weakness needs `failures: PATH`, and `failures` is only for mode: weakness")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failures_sha256(self) -> str | None:
        """The failures file's content hash: in the batch key, so an edited file is never silently reused."""
        if self.failures is None:
            return None
        path = Path(self.failures).expanduser()
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"


# ------------------------------------------------------------------------------------------------ concept banks


@dataclass(frozen=True)
class Concept:
    concept: str
    explanation: str = ""
    category: str = ""


def bank_path(spec: str, data_dir: Path) -> Path:
    """A shipped bank's file, or the user's path (relative: to the working directory, then to data/)."""
    if spec in SHIPPED_BANKS:
        return Path(data_dir) / SHIPPED_BANKS[spec]
    path = Path(spec).expanduser()
    return Path(data_dir) / path if not path.exists() and (Path(data_dir) / path).exists() else path


def _concept(row: Any, where: str) -> Concept:
    if isinstance(row, str) and row.strip():
        return Concept(" ".join(row.split()))
    name = row.get("concept") or row.get("name") if isinstance(row, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: a concept needs a non-empty 'concept' name")
    return Concept(" ".join(name.split()), (row.get("explanation") or "").strip(),
                   row.get("category") or row.get("area") or "")


@lru_cache(maxsize=16)
def _read_jsonl(path: Path, mtime_ns: int) -> tuple[dict[str, Any], ...]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
    return tuple(rows)


def read_jsonl(path: Path) -> tuple[dict[str, Any], ...]:
    if not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    return _read_jsonl(path.resolve(), path.stat().st_mtime_ns)


def load_concepts(specs: list[str], data_dir: Path, categories: list[str] | None = None) -> list[Concept]:
    """Concepts from the banks in order, each name once (first wins), only those in ``categories`` if given."""
    seen: dict[str, Concept] = {}
    for spec in specs:
        path = bank_path(spec, data_dir)
        if not path.is_file():
            raise FileNotFoundError(f"concept bank {spec!r}: no such file {path} (use {sorted(SHIPPED_BANKS)} or "
                                    "a path to a .jsonl / .jsonl.gz file)")
        for i, row in enumerate(read_jsonl(path), 1):
            concept = _concept(row, f"{path}:{i}")
            seen.setdefault(concept.concept.lower(), concept)
    wanted = [c.lower() for c in categories or []]
    out = [c for c in seen.values() if not wanted or any(w in c.category.lower() for w in wanted)]
    if not out:
        raise ValueError(f"concept banks {specs} have no concept" + (f" in categories {categories}" if wanted else ""))
    return out


# ------------------------------------------------------------------------------------------------ parsing


def parse_generation(text: str, finish: str = "stop") -> tuple[str | None, str | None]:
    """(rationale, problem) from ``<rationale>…</rationale><problem>…</problem>``; None for a missing tag. The
    step stops at ``</problem>`` (servers leave the stop string out), so an open ``<problem>`` that ended on a stop
    is complete; one cut by the token limit is not."""
    if finish != "length" and re.search(r"<problem>", text, re.I) and not re.search(r"</problem>", text, re.I):
        text += "</problem>"
    found = [_TAG[tag].search(text) for tag in ("rationale", "problem")]
    rationale, problem = (m.group(1).strip() if m and m.group(1).strip() else None for m in found)
    return rationale, problem


def claimed_features(rationale: str) -> list[str]:
    """The difficulty features the rationale says it uses: letters on a "Features used:" line, else names."""
    line = _FEATURES_LINE.search(rationale)
    letters = {m.group(1).lower() for m in _FEATURE_LETTER.finditer(line.group(1))} if line else set()
    low = rationale.lower()
    letters |= {k for k, name in FEATURES.items() if name.split(" (")[0] in low}
    return [FEATURES[k] for k in sorted(letters)]


def claimed_concepts(rationale: str, offered: list[Concept]) -> list[str]:
    """The offered concepts the rationale names."""
    low = " ".join(rationale.lower().split())
    return [c.concept for c in offered if c.concept.lower() in low]


def format_score(text: str) -> float:
    """The paper's r_format for a sample with both tags: 0.7 + 0.3 x step score (n/5 up to 5 "Step k" markers,
    then max(1 - (n - 5)/5, 0))."""
    steps = len(_STEP.findall(text))
    step_score = steps / 5 if steps <= 5 else max(1 - (steps - 5) / 5, 0.0)
    return round(0.7 + 0.3 * step_score, 4)


# ------------------------------------------------------------------------------------------------ candidates


@dataclass
class SmithCandidate(Candidate):
    """One attempt: offered concepts -> rationale and problem -> solver samples -> agreed answer."""

    offered: list[Concept] = field(default_factory=list)
    failure: dict[str, Any] | None = None
    raw: str = ""
    rationale: str = ""
    problem: str = ""
    samples: list[str | None] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    solver_tokens: float = 0.0
    answer: str | None = None
    solution: str | None = None
    difficulty: dict[str, float] = field(default_factory=dict)


def _generation_check(params: Params):  # noqa: ANN201 - a Parse for LLMStep
    def check(cand: SmithCandidate, text: str, finish: str) -> str | None:
        rationale, problem = parse_generation(text, finish)
        if problem is None:  # a sample cut after its </problem> is whole
            return "generate_truncated" if finish == "length" else "generate_no_problem_tag"
        if rationale is None:
            return "generate_no_rationale_tag"
        if len(claimed_features(rationale)) < params.min_features:
            return "generate_too_few_features"
        problems = question_problems(problem)
        return f"problem_{problems[0]}" if problems else None

    return check


def _solution_check(cand: SmithCandidate, text: str, finish: str) -> str | None:
    if finish == "length":
        return "solve_truncated"
    problems = solution_problems(text, question=cand.problem)
    return f"solve_{problems[0]}" if problems else None


def _attempts(records: list[dict[str, Any]], params: Params, ctx: StageContext) -> list[SmithCandidate]:
    bank = load_concepts(params.concepts, ctx.data_dir, params.categories)
    k = min(params.concepts_per_problem, len(bank))
    cands = []
    for rec in records:
        rng = ctx.rng(rec["id"])
        for j in range(params.problems_per_input):
            cands.append(SmithCandidate(parent=rec, slot=f"{stable_slot(rec)}|{j}", seed=rng.getrandbits(31),
                                        offered=rng.sample(bank, k)))
    return cands


def _failure_attempts(params: Params, ctx: StageContext) -> list[SmithCandidate]:
    """``variants_per_failure`` attempts per failure, each offered that failure's own concepts."""
    bank = {c.concept.lower(): c for c in load_concepts(params.concepts, ctx.data_dir)}
    path = Path(params.failures or "").expanduser()
    cands = []
    for i, failure in enumerate(read_jsonl(path), 1):
        names = failure.get("concepts") if isinstance(failure, dict) else None
        if not names:
            ctx.reject("failure_without_concepts", None, f"{path}:{i}")
            continue
        offered = [_concept(n, f"{path}:{i}") for n in names]
        offered = [bank.get(c.concept.lower(), c) if not c.explanation else c for c in offered]
        key = hashlib.sha256(json.dumps(failure, sort_keys=True).encode()).hexdigest()[:16]
        rng = ctx.rng("failure", key)
        for j in range(params.variants_per_failure):
            cands.append(SmithCandidate(parent=None, slot=f"failure:{key}|{j}", seed=rng.getrandbits(31),
                                        offered=offered, failure={**failure, "line": i, "key": key}))
    return cands


# ------------------------------------------------------------------------------------------------ the stage


def run(records: list[dict[str, Any]], params: Params, ctx: StageContext) -> list[dict[str, Any]]:
    ctx.funnel.add(ctx.stage, "in", len(records))
    if params.mode == "weakness":  # the failures are handled once, by the stage's first batch
        cands = _failure_attempts(params, ctx) if ctx.batch == 0 and records else []
    else:
        cands = _attempts(records, params, ctx)
    ctx.funnel.add(ctx.stage, "attempts", len(cands))
    steps = {
        "generate": LLMStep(ctx, "generate", params.templates.generate, "teacher", reasks=params.reasks,
                            stop=["</problem>"],
                            temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens),
        "solve": LLMStep(ctx, "solve", params.templates.solve, "solver", reasks=params.reasks, n=params.samples,
                         temperature=params.solve_temperature, top_p=params.solve_top_p,
                         max_tokens=params.solve_max_tokens),
    }
    live = _generate(cands, steps["generate"], params)
    ctx.funnel.add(ctx.stage, "problems", len(live))
    _solve(live, steps["solve"], params, ctx)
    out = []
    for cand in cands:
        if cand.reject is not None:
            ctx.reject(cand.reject, _row(cand, steps, params, ctx, kept=False), cand.detail)
            continue
        out.append(_row(cand, steps, params, ctx, kept=True))
        ctx.funnel.add(ctx.stage, "generated")
    ctx.advance(len(records))
    return out


def _generate(cands: list[SmithCandidate], step: LLMStep[SmithCandidate], params: Params) -> list[SmithCandidate]:
    def variables(c: SmithCandidate) -> dict[str, Any]:
        return {"concepts": [{"concept": x.concept, "explanation": _cut(x.explanation, params.explanation_chars)}
                             for x in c.offered]}

    live = []
    for cand, comp in zip(cands, step(cands, variables, _generation_check(params)), strict=True):
        cand.raw = comp.texts[0] if comp.texts else ""
        finish = comp.finish_reasons[0] if comp.finish_reasons else "stop"
        if not comp.ok:
            cand.fail("request_error", comp.error or "")
        elif comp.problems[0] is not None:
            cand.fail(comp.problems[0], cand.raw[:2000])
        else:
            rationale, problem = parse_generation(cand.raw, finish)
            cand.rationale, cand.problem = rationale or "", problem or ""
            live.append(cand)
    return live


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def _solve(live: list[SmithCandidate], step: LLMStep[SmithCandidate], params: Params, ctx: StageContext) -> None:
    comps = step(live, lambda c: {"question": c.problem}, _solution_check)
    for cand, comp in zip(live, comps, strict=True):
        if not comp.ok:
            cand.fail("request_error", comp.error or "")
            continue
        cand.samples = usable_texts(comp)
        cand.answers = sample_answers(cand.samples, params.samples)
        cand.solver_tokens = comp.completion_tokens / max(len(comp.texts), 1)
        top = agreement(cand.answers, params.samples, params.min_agree)
        agreeing = votes(cand.answers, top, params.samples)[2] if top is not None else 0
        cand.difficulty = {
            "r_len": round(cand.solver_tokens / params.length_norm, 6),
            "r_consist": round(agreeing / params.samples, 4),
            "r_format": format_score(cand.raw),
            "solver_tokens": round(cand.solver_tokens, 1),
        }
        cand.difficulty["score"] = round(cand.difficulty["r_format"] + 0.7 * cand.difficulty["r_len"]
                                         + 0.3 * cand.difficulty["r_consist"], 4)
        if top is None:
            answered = sum(a is not None for a in cand.answers)
            cand.fail("no_agreement", f"no answer reached min_agree={params.min_agree} of {params.samples} asked "
                                      f"({answered} answered: {cand.answers})")
            continue
        ctx.funnel.add(ctx.stage, "agreed")
        cand.answer = top
        if guessable(top):
            cand.fail("yes_no_answer", f"the samples agree on {top!r}, which a guess hits half the time; the prompt "
                                       "asks for a number or an expression")
            continue
        if question_problems(cand.problem, answer=top):
            cand.fail("problem_leaks_answer", f"the problem states the agreed answer {top!r}")
            continue
        below = {k: v for k, v in params.min_difficulty.items() if cand.difficulty[k] < v}
        if below:
            cand.fail("below_min_difficulty", ", ".join(f"{k}={cand.difficulty[k]} < {v}" for k, v in below.items()))
            continue
        agreeing_texts = [t for t, a in zip(cand.samples, cand.answers, strict=False)
                          if t and a is not None and answers_match(a, top)]
        cand.solution = (min(agreeing_texts, key=len) if params.keep_solution == "shortest"
                         else ctx.rng("keep", cand.slot).choice(agreeing_texts))


def _row(cand: SmithCandidate, steps: dict[str, LLMStep[SmithCandidate]], params: Params, ctx: StageContext,
         kept: bool) -> dict[str, Any]:
    """A kept row, or what a thrown-away attempt got to (its problem, or the raw generation) for the dropped table."""
    agreeing = votes(cand.answers, cand.answer, params.samples)[2] if cand.answer else 0
    detail = f"agreed answer {cand.answer!r} ({agreeing}/{params.samples} agree, min_agree={params.min_agree}; no gold)"
    verification = {"status": "verified" if kept else "failed", "method": "majority", "votes": agreeing,
                    "samples": params.samples, "detail": detail if kept else cand.detail}
    offered = [c.concept for c in cand.offered]
    method_params = {
        **params.model_dump(mode="json", exclude={"concepts"}), "concept_banks": params.concepts, "version": VERSION,
        "concepts_used": claimed_concepts(cand.rationale, cand.offered), "features_used":
        claimed_features(cand.rationale), "rationale": cand.rationale, "answers": cand.answers,
        "categories_offered": sorted({c.category for c in cand.offered if c.category}),
    }
    if cand.failure is not None:
        method_params["failure"] = {k: cand.failure.get(k) for k in ("id", "question", "answer", "line", "key")}
    key = hashlib.sha256("|".join(offered).encode()).hexdigest()[:12]
    source = {"dataset": "mathsmith", "split": "synthetic", "subject": None,
              "seed_id": f"failure:{cand.failure['key']}" if cand.failure else f"concepts:{key}"}
    return make_record(
        question=cand.problem or cand.raw[:2000], solution=cand.solution if kept else _shown(cand),
        answer=cand.answer, method=NAME, source=source, method_params=method_params, concepts=offered,
        difficulty=json.dumps(cand.difficulty, sort_keys=True) if cand.difficulty else None,
        verification=verification, generator=generator(cand, steps), run_id=ctx.run_id or None, round=ctx.round,
    )


def _shown(cand: SmithCandidate) -> str | None:
    """For a dropped attempt: a sample with the agreed answer, else any usable sample."""
    pairs = [(t, a) for t, a in zip(cand.samples, cand.answers, strict=False) if t]
    for text, ans in pairs:
        if cand.answer is not None and ans is not None and answers_match(ans, cand.answer):
            return text
    return pairs[0][0] if pairs else None
