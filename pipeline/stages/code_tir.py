"""Code-interpreter trajectories (methods.md §6: ToRA, MARIO, MuMath-Code, CoRT), verified by execution.

For each problem the teacher writes rationale and a fenced python block; generation stops at the output fence
(``\\`\\`\\`output`` for ToRA, ``Observation:`` for MARIO's ReAct format); the sandbox (``pipeline.sandbox``) runs
the code and its output (stdout, or the last traceback line, middle-truncated) is appended; generation continues in
the same assistant turn, up to ``max_calls`` calls ("Reach max function call limit." after the last). On a
runtime error MuMath-Code's correction instruction is appended (``self_correction``); CoRT hints can open the
turn (``hints``).

Trajectories do not move in lock-step: each one's next turn is submitted as soon as its code has run, while the
others are still generating (``LLMClient.converse``), so the engine never waits for the slowest of a batch.

A trajectory is kept when its final ``\\boxed{}`` matches the gold (or, for problems without one, the answer at
least ``min_agree`` of the problem's trajectories agree on), its last code output is consistent with that answer,
and not every call errored. Rows are extra solutions for their question (``OUTPUT = "solutions"``): ``trajectory``
holds the structured turns, ``messages`` a training-ready rendering (one assistant turn with output blocks, or
tool messages).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.llm.types import ChatRequest, Completion
from pipeline.quality import agreement
from pipeline.records import derive
from pipeline.sandbox import ExecResult, Sandbox, SandboxConfig
from pipeline.stages import StageContext
from pipeline.stages.llm_step import Candidate, LLMParams, LLMStep, Turns, generator, stable_slot
from pipeline.verify import answers_match, extract_answer

NAME = "code_tir"
VERSION = "1"
ROLES = {"teacher": "writes the rationale and the code"}
OUTPUT = "solutions"
VERIFIER = "execution"

CORRECTION = "The code above has encountered a problem. Now point out its mistakes and then correct them.\n"
LIMIT = "Reach max function call limit."
_CODE = re.compile(r"```python\n(.*?)```", re.S)
_FENCED = re.compile(r"```(?:python)?\n(.*?)(?:```|$)", re.S)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


class Templates(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tora: str = "code_tir/tora.v1"
    mario: str = "code_tir/mario.v1"


class Params(LLMParams):
    format: Literal["tora", "mario"] = "tora"
    samples: int = Field(1, ge=1, le=64, description="trajectories per problem")
    min_agree: int | float = Field(0.5, description="for problems without gold: share (or count) of samples asked")
    max_calls: int = Field(4, ge=1, le=32, description="code executions per trajectory")
    output_chars: int = Field(400, ge=20, description="code output is middle-truncated to this length")
    self_correction: bool = Field(True, description="MuMath-Code: ask for a correction after a runtime error")
    hints: list[str] = Field(default_factory=list, description="CoRT hint(s) that open the assistant turn")
    require_code: bool = Field(True, description="reject trajectories that never ran code")
    temperature: float = Field(0.6, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(1024, ge=16, description="per turn")
    messages: Literal["single_turn", "tool_messages"] = Field(
        "single_turn", description="SFT rendering: one assistant turn with output blocks, or tool messages"
    )
    sandbox: SandboxConfig = Field(default_factory=lambda: SandboxConfig(workers=4))
    parallel: int = Field(8, ge=1, le=256, description="code executions at once across trajectories")
    templates: Templates = Field(default_factory=Templates)


@dataclass
class Trajectory(Candidate):
    """One (problem, sample) trajectory: the assistant text so far and what its calls did."""

    sample: int = 0
    gold: str | None = None
    text: str = ""
    steps: list[dict[str, str]] = field(default_factory=list)
    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    last_output: str | None = None
    finished: bool = False
    answer: str | None = None


def _code_of(turn: str, fmt: str) -> str | None:
    """The code a turn ends with (it stopped at the output fence), or None when it asked for no call."""
    if fmt == "tora":
        if not turn.rstrip().endswith("```") or "boxed" in turn:
            return None
        blocks = _CODE.findall(turn)
        return blocks[-1] if blocks else None
    if "Final Answer" in turn or "Action Input:" not in turn:
        return None
    tail = turn.rsplit("Action Input:", 1)[1]
    fenced = _FENCED.search(tail)
    code = (fenced.group(1) if fenced else tail).strip()
    return code + "\n" if code else None


def _output_block(result: ExecResult, fmt: str) -> str:
    shown = result.output if result.status == "ok" else (result.output or result.status)
    if result.status == "timeout":
        shown = "Timeout Error"
    return f"```output\n{shown.strip()}\n```\n" if fmt == "tora" else f"Observation: {shown.strip()}\n"


def consistent(answer: str, output: str | None) -> bool:
    """The last code output supports the answer: one of its values matches it (or the output is the answer)."""
    if output is None:
        return False
    text = output.strip()
    if text and answers_match(text.splitlines()[-1].strip(), answer):
        return True
    return any(answers_match(v, answer) for v in _NUMBER.findall(text)[-20:])


class _Runner:
    """Turns of every trajectory of a batch, each on its own (``converse``)."""

    def __init__(self, params: Params, ctx: StageContext, sandbox: Sandbox) -> None:
        self.params, self.ctx, self.sandbox = params, ctx, sandbox
        template = params.templates.tora if params.format == "tora" else params.templates.mario
        self.stop = ["```output"] if params.format == "tora" else ["Observation:"]
        self.step: LLMStep[Trajectory] = LLMStep(
            ctx, "turn", template, "teacher", stop=self.stop, temperature=params.temperature,
            top_p=params.top_p, max_tokens=params.max_tokens,
        )

    def request(self, traj: Trajectory) -> ChatRequest:
        """The trajectory's next turn: a new turn, or its assistant text so far continued (one per call)."""
        variables = {"question": traj.parent["question"]}
        if not traj.text:
            return self.step.prompt(traj, variables)
        messages = [*self.step.template.render(**variables), {"role": "assistant", "content": traj.text}]
        return self.step.prompt(traj, variables, Turns(messages), turn=traj.calls + 1)

    def code_in(self, turn: str, finish: str) -> str | None:
        """The code a turn asks to run: only a turn that stopped at the output fence asks for a call."""
        return _code_of(turn, self.params.format) if finish == "stop" else None

    def on_turn(self, traj: Trajectory, completion: Completion) -> ChatRequest | None:
        traj.charge(completion)
        if not completion.ok:
            traj.fail("request_error", completion.error or "")
            return None
        turn = completion.texts[0]
        traj.text += turn
        traj.steps.append({"kind": "text", "content": turn})
        code = self.code_in(turn, completion.finish_reasons[0])
        if code is None:
            traj.finished = completion.finish_reasons[0] != "length"
            if not traj.finished:
                traj.fail("truncated", "the turn hit max_tokens")
            return None
        traj.steps[-1:] = self._split_code(turn, code)
        session = f"{traj.slot}|{traj.sample}" if self.params.sandbox.carry_state else None
        result = self.sandbox.run(code, session=session)
        traj.calls += 1
        traj.errors += result.status != "ok"
        traj.timeouts += result.status == "timeout"
        traj.last_output = result.output if result.status == "ok" else None
        block = _output_block(result, self.params.format)
        traj.steps.append({"kind": "output", "content": block})
        traj.text += ("" if traj.text.endswith("\n") else "\n") + block
        if result.status != "ok" and self.params.self_correction:
            traj.text += CORRECTION
            traj.steps.append({"kind": "text", "content": CORRECTION})
        if traj.calls >= self.params.max_calls:
            traj.text += LIMIT
            traj.steps.append({"kind": "text", "content": LIMIT})
            traj.fail("max_calls", f"{traj.calls} calls without a final answer")
            return None
        return self.request(traj)

    @staticmethod
    def _split_code(turn: str, code: str) -> list[dict[str, str]]:
        """A turn that ends in code as text + code (+ text): the fences are rendering, not content."""
        at = turn.rfind(code)
        before, after = (turn[:at], turn[at + len(code):]) if at >= 0 else (turn, "")
        before = re.sub(r"```(?:python)?\n$", "", before)
        after = re.sub(r"^```\n?", "", after)
        parts = [{"kind": "text", "content": before}, {"kind": "code", "content": code}]
        return parts + ([{"kind": "text", "content": after}] if after.strip() else [])


def run(records: list[dict[str, Any]], params: Params, ctx: StageContext) -> list[dict[str, Any]]:
    trajectories: list[Trajectory] = []
    for rec in records:
        ctx.funnel.add(ctx.stage, "in")
        rng = ctx.rng(rec["id"])
        for k in range(params.samples):
            hint = params.hints[k % len(params.hints)] + "\n" if params.hints else ""
            trajectories.append(Trajectory(parent=rec, slot=stable_slot(rec), seed=rng.getrandbits(31), sample=k,
                                           gold=rec.get("answer"), text=hint,
                                           steps=[{"kind": "text", "content": hint}] if hint else []))
    if not trajectories:
        ctx.advance(len(records))
        return []
    return _keep(trajectories, params, ctx, generate(trajectories, params, ctx))


def generate(
    trajectories: list[Trajectory], params: Params, ctx: StageContext, runner: type[_Runner] = _Runner
) -> dict[str, LLMStep[Any]]:
    """Run every trajectory to its end, each on its own, with one sandbox pool for the batch."""
    config = params.sandbox.model_copy(update={"max_output_chars": params.output_chars})
    with Sandbox(config) as sandbox:
        turns = runner(params, ctx, sandbox)
        turns.step.client.converse(
            [turns.request(t) for t in trajectories],
            lambda i, comp: turns.on_turn(trajectories[i], comp),
            parallel=params.parallel,
        )
    for traj in trajectories:
        traj.used.append(("turn", "teacher"))
    return {"turn": turns.step}


def _keep(
    trajectories: list[Trajectory], params: Params, ctx: StageContext, steps: dict[str, LLMStep[Any]]
) -> list[dict[str, Any]]:
    by_problem: dict[str, list[Trajectory]] = {}
    for traj in trajectories:
        traj.answer = extract_answer(traj.text) if traj.reject is None else None
        by_problem.setdefault(traj.parent["id"], []).append(traj)
    out = []
    for group in by_problem.values():
        gold = group[0].gold
        target, method = gold, "execution"
        if not gold:
            target = agreement([t.answer for t in group], params.samples, params.min_agree)
            method = "execution+majority"
        for traj in group:
            reason = _verdict(traj, target, params)
            if reason is not None:
                ctx.reject(reason, _row(traj, params, ctx, steps, target, method, "failed"), traj.detail)
                continue
            out.append(_row(traj, params, ctx, steps, target, method, "verified"))
            ctx.funnel.add(ctx.stage, "generated")
    ctx.advance(len(by_problem))
    return out


def _verdict(traj: Trajectory, target: str | None, params: Params) -> str | None:
    """Why the trajectory is thrown away (None: keep it)."""
    if traj.reject is not None:
        return traj.reject
    if params.require_code and traj.calls == 0:
        return "no_code"
    if traj.calls and traj.errors == traj.calls:
        return "every_call_failed"
    if traj.answer is None:
        return "no_answer"
    if target is None:
        return "no_agreement"
    if not answers_match(traj.answer, target):
        traj.detail = f"answer {traj.answer!r} != {target!r}"
        return "wrong_answer"
    if traj.calls and not consistent(target, traj.last_output):
        traj.detail = f"last output {traj.last_output!r} does not support {target!r}"
        return "output_disagrees"
    return None


def _messages(traj: Trajectory, params: Params) -> list[dict[str, str]]:
    question = {"role": "user", "content": traj.parent["question"]}
    if params.messages == "single_turn":
        return [question, {"role": "assistant", "content": traj.text}]
    messages = [question]
    for step in traj.steps:
        role = "tool" if step["kind"] == "output" else "assistant"
        if messages[-1]["role"] == role == "assistant":
            messages[-1] = {"role": "assistant", "content": messages[-1]["content"] + step["content"]}
        else:
            messages.append({"role": role, "content": step["content"]})
    return messages


def _row(
    traj: Trajectory, params: Params, ctx: StageContext, steps: dict[str, LLMStep[Any]], target: str | None,
    method: str, status: str,
) -> dict[str, Any]:
    meta = params.model_dump(mode="json")
    meta.update(version=VERSION, sample=traj.sample, calls=traj.calls, errors=traj.errors, timeouts=traj.timeouts)
    verification = {"status": status, "method": method, "samples": params.samples,
                    "detail": traj.detail or f"calls={traj.calls} errors={traj.errors} timeouts={traj.timeouts}"}
    return derive(
        traj.parent, question=traj.parent["question"], solution=traj.text, answer=target or traj.answer,
        method=NAME, method_params=meta, verification=verification, generator=generator(traj, steps),
        trajectory=traj.steps, messages=_messages(traj, params), round=ctx.round,
    )
