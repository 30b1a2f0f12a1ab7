"""Chain-of-thought length control (methods.md §5): DAP / LiteCoT difficulty-aware rewrites and C3oT compression.

Both keep the answer and change the reasoning, so their rows are more solutions for an existing question
(``OUTPUT = "solutions"``), each naming the solution it was made from in ``parent_ids``. Which solution of a
question the dataset keeps is the build's length-aware selection (``dedup.prefer: [shorter]`` keeps the
shortest correct one, ``[near_target]`` the one nearest a length target for its difficulty tier, the inverted U
of "When More is Less"), applied to every verified solution of the question whatever stage made it.

- ``mode: dap``: the teacher gets the question, the correct answer and optionally the existing solution, judges
  the complexity (simple / moderate / highly complex) and writes with that tier's template, then a concise
  solution ending in ``\\boxed{}``. The tier goes to ``difficulty``.
- ``mode: compress``: the teacher shortens an existing solution keeping every key step and number; rows can carry
  a ``long`` / ``short`` condition tag for conditioned training.

The teacher is shown the answer (or a solution that states it), so matching it proves little on its own (issue
13): a rewrite is kept only when it also passes the solution gates (one committed answer that its own working
supports, real reasoning), and with ``confirm_samples`` the solver role must reach the same answer without being
shown it. ``verification.method`` says which held. Lengths are counted with the model's real tokenizer
(``tokenizer:`` a model folder or ``tokenizer.json``; or the server's own tokenize endpoint).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.quality import agreement, solution_problems
from pipeline.records import derive, strip_calculator_annotations
from pipeline.stages import StageContext
from pipeline.stages.llm_step import Candidate, LLMParams, LLMStep, generator, stable_slot, usable_texts
from pipeline.verify import answers_match, extract_answer

NAME = "cot_length"
VERSION = "2"
ROLES = {"teacher": "rewrites or compresses the solution", "solver": "confirms the answer without seeing it"}
OUTPUT = "solutions"
VERIFIER = "gold (shown) + solution gates, optionally solver agreement"

TIERS = ("simple", "moderate", "highly complex")
_TIER = re.compile(r"complexity\s*[:\-]\s*\**\s*(simple|moderate|highly complex|complex)", re.I)


class Templates(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dap: str = "cot_length/dap.v1"
    compress: str = "cot_length/compress.v1"
    confirm: str = "persona/solve.v1"


class Params(LLMParams):
    mode: Literal["dap", "compress"] = "dap"
    show_solution: bool = Field(True, description="dap: give the teacher the existing solution as a reference")
    condition_tags: bool = Field(
        False, description="compress: rows carry condition 'short' (a system turn in messages) for conditioned training"
    )
    confirm_samples: int = Field(0, ge=0, le=64, description="solver samples that must reach the gold unseen")
    min_agree: int | float = Field(0.5, description="share (or count) of confirm_samples that must agree")
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(2048, ge=16)
    tokenizer: str | None = Field(
        None, description="model folder or tokenizer.json for token counts (default: the teacher's local folder)"
    )
    templates: Templates = Field(default_factory=Templates)


# ------------------------------------------------------------------------------------------------ tokens


class TokenizerMissing(ValueError):
    pass


@lru_cache(maxsize=8)
def _local_tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    file = Path(path)
    if file.is_dir():
        file = file / "tokenizer.json"
    if not file.is_file():
        raise TokenizerMissing(
            f"cot_length counts tokens with the model's tokenizer, but {file} does not exist: set "
            "params.tokenizer to the model folder (with tokenizer.json) or to a tokenizer.json file"
        )
    return Tokenizer.from_file(str(file))


def token_counter(params: Params, model: Any) -> Any:
    """``count(text) -> tokens`` with the real tokenizer: params.tokenizer, else the model's local folder, else
    the OpenAI-compatible server's tokenize endpoint (vLLM ``/tokenize``, llama.cpp ``/extras/tokenize``)."""
    source = params.tokenizer or (model.model if Path(str(model.model)).is_dir() else None)
    if source is not None:
        tok = _local_tokenizer(str(source))
        return lambda text: len(tok.encode(text, add_special_tokens=False).ids)
    # an LLMClient names its server in its identity (openai backend); a bare config has base_url
    base = getattr(model, "base_url", None) or getattr(model, "identity", {}).get("base_url")
    if not base:
        raise TokenizerMissing(
            "cot_length needs a tokenizer: set params.tokenizer to the model folder (tokenizer.json)"
        )
    return _server_tokenizer(base.rstrip("/"), model.model)


TOKENIZE_TIMEOUT_S = 600.0  # a one-request-at-a-time server (llama.cpp) answers /tokenize after its generation


def _server_tokenizer(base_url: str, model: str, timeout: float = TOKENIZE_TIMEOUT_S) -> Any:
    import httpx

    root = base_url.removesuffix("/v1")
    for url, body in ((f"{root}/tokenize", {"model": model, "prompt": "probe"}),
                      (f"{root}/extras/tokenize", {"input": "probe"})):
        try:
            status = httpx.post(url, json=body, timeout=timeout).status_code
        except httpx.TimeoutException as exc:  # busy, not absent: say so instead of "no endpoint"
            raise TokenizerMissing(f"cot_length: {url} did not answer in {timeout:g}s") from exc
        except httpx.HTTPError:
            continue
        if status == 200:
            key = "prompt" if url.endswith("/tokenize") and "extras" not in url else "input"

            @lru_cache(maxsize=4096)  # a reference solution is counted for each of its rewrites
            def count(text: str, url: str = url, key: str = key) -> int:
                reply = httpx.post(url, json={"model": model, key: text}, timeout=timeout).json()
                return int(reply.get("count") or len(reply.get("tokens", [])))

            return count
    raise TokenizerMissing(
        f"cot_length needs the model's tokenizer: {base_url} has no tokenize endpoint; set params.tokenizer to "
        "the model folder (tokenizer.json)"
    )


# ------------------------------------------------------------------------------------------------ the stage


@dataclass
class Rewrite(Candidate):
    text: str | None = None
    tier: str | None = None
    answer: str | None = None


def tier_of(text: str) -> str | None:
    match = _TIER.search(text[:400])
    if not match:
        return None
    tier = match.group(1).lower()
    return "highly complex" if tier == "complex" else tier


def run(records: list[dict[str, Any]], params: Params, ctx: StageContext) -> list[dict[str, Any]]:
    t = params.templates
    template = t.dap if params.mode == "dap" else t.compress
    write = LLMStep(ctx, params.mode, template, "teacher", reasks=params.reasks, temperature=params.temperature,
                    max_tokens=params.max_tokens)
    count = token_counter(params, ctx.client("teacher"))
    cands: list[Rewrite] = []
    for rec in records:
        ctx.funnel.add(ctx.stage, "in")
        if not rec.get("answer"):
            ctx.reject("no_gold")
            continue
        if params.mode == "compress" and not rec.get("solution"):
            ctx.reject("no_solution")
            continue
        cands.append(Rewrite(parent=rec, slot=stable_slot(rec), seed=ctx.rng(rec["id"]).getrandbits(31)))

    def variables(c: Rewrite) -> dict[str, Any]:
        solution = strip_calculator_annotations(c.parent.get("solution") or "")
        show = params.mode == "compress" or params.show_solution
        return {"question": c.parent["question"], "answer": c.parent["answer"], "solution": solution if show else ""}

    def parse(c: Rewrite, text: str, finish: str) -> str | None:
        if finish == "length":
            return "truncated"
        answer = extract_answer(text)
        if answer is None:
            return "no_answer"
        # the teacher is shown the answer (and, for compress, the solution): its working must reach it
        problems = solution_problems(text, question=c.parent["question"], final_answer=answer, answer_shown=True)
        return problems[0] if problems else None

    for cand, comp in zip(cands, write(cands, variables, parse), strict=True):
        if not comp.ok:
            cand.fail("request_error", comp.error or "")
        elif comp.problems[0] is not None:
            cand.fail(comp.problems[0], comp.texts[0][-500:])
        else:
            cand.text = comp.texts[0].strip()  # the tiered reasoning and its concise Solution: both are the target
            cand.answer = extract_answer(cand.text)
            cand.tier = tier_of(cand.text) if params.mode == "dap" else None
            if not answers_match(cand.answer, cand.parent["answer"]):
                cand.fail("wrong_answer", f"{cand.answer!r} != gold {cand.parent['answer']!r}")
    steps: dict[str, LLMStep[Any]] = {params.mode: write}
    live = [c for c in cands if c.reject is None]
    if params.confirm_samples and live:
        steps["confirm"] = _confirm(live, params, ctx)
    out = []
    for cand in cands:
        if cand.reject is not None:
            ctx.reject(cand.reject, _row(cand, params, ctx, steps, count, "failed"), cand.detail)
            continue
        out.append(_row(cand, params, ctx, steps, count, "verified"))
        ctx.funnel.add(ctx.stage, "generated")
    ctx.advance(len(records))
    return out


def _confirm(live: list[Rewrite], params: Params, ctx: StageContext) -> LLMStep[Any]:
    """The solver answers each question without being shown the answer; the rewrite stands only if enough do."""
    solve = LLMStep(ctx, "confirm", params.templates.confirm, "solver", n=params.confirm_samples, temperature=0.7,
                    max_tokens=params.max_tokens)
    for cand, comp in zip(live, solve(live, lambda c: {"question": c.parent["question"]}), strict=True):
        answers = [extract_answer(t) if t else None for t in usable_texts(comp)] if comp.ok else []
        agreed = agreement(answers, params.confirm_samples, params.min_agree)
        if agreed is None or not answers_match(agreed, cand.parent["answer"]):
            cand.fail("unconfirmed", f"solver without the answer agreed on {agreed!r}")
    return solve


def _row(
    cand: Rewrite, params: Params, ctx: StageContext, steps: dict[str, LLMStep[Any]], count: Any, status: str
) -> dict[str, Any]:
    before = count(strip_calculator_annotations(cand.parent.get("solution") or ""))
    after = count(cand.text) if cand.text else 0
    meta = params.model_dump(mode="json")
    meta.update(version=VERSION, tokens_before=before, tokens_after=after, tier=cand.tier,
                condition="short" if params.mode == "compress" and params.condition_tags else None)
    confirmed = "confirm" in steps
    verification = {
        "status": status,
        "method": "gold_shown+gates" + ("+solver" if confirmed else ""),
        "samples": params.confirm_samples or None,
        "detail": cand.detail or f"tokens {before} -> {after}",
    }
    messages = None
    if meta["condition"]:  # conditioned training: the short solution answers under the "short" condition
        messages = [{"role": "system", "content": "condition: short"},
                    {"role": "user", "content": cand.parent["question"]},
                    {"role": "assistant", "content": cand.text or ""}]
    return derive(
        cand.parent, question=cand.parent["question"], solution=cand.text, answer=cand.parent["answer"],
        method=NAME, method_params=meta, verification=verification, generator=generator(cand, steps),
        difficulty=cand.tier or cand.parent.get("difficulty"), messages=messages, round=ctx.round,
    )


def describe_lengths(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean tokens before / after per tier, for reports and the bench."""
    by_tier: dict[str, list[tuple[int, int]]] = {}
    for row in rows:
        meta = json.loads(row["method_params"])
        by_tier.setdefault(meta.get("tier") or "-", []).append((meta["tokens_before"], meta["tokens_after"]))
    return {
        tier: {"n": len(v), "before": sum(b for b, _ in v) / len(v), "after": sum(a for _, a in v) / len(v)}
        for tier, v in by_tier.items()
    }
