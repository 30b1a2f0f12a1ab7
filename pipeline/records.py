"""The one record schema every stage reads and writes.

A record is a plain ``dict`` while it moves through the pipeline (cheap to build, easy to test) and a row of
``SCHEMA`` once written. Stages fill values; they never invent columns. Field by field:

- ``id``: sha256 (first 32 hex chars) of the normalised question, solution and answer. Content-derived, so a
  rerun of the same recipe gives the same ids and identical rows from two stages collapse to one id.
- ``question`` / ``solution`` / ``answer``: the problem, a worked solution, and the final answer as a string.
- ``solution_raw``: the solution as its source wrote it, when the written ``solution`` differs (GSM8K's
  ``<<48/2=24>>`` calculator annotations are stripped from ``solution`` and ``messages`` at write time, since
  training on them teaches a model to emit them; stages always see the raw text).
- ``messages``: the SFT view: ``[{role: "user", content: question}, {role: "assistant", content: solution}]``, or
  the whole conversation a stage held (multi-turn, tool output) when it sets one.
- ``source``: where the root seed came from: ``dataset`` (e.g. ``gsm8k``), ``split``, ``seed_id`` (stable id of
  the seed inside its file: ``<file stem>:<line>``), ``subject`` (MATH subject, when known).
- ``parent_ids``: ids of the records this one was derived from (empty for seeds).
- ``method``: the stage that made the row (``seed``, ``symbolic``, ``entity_swap``, ``persona`` ...).
- ``method_params``: JSON text of the stage parameters that produced the row (JSON, because each method has
  different parameters and one Parquet schema must hold them all).
- ``persona`` / ``concepts`` / ``difficulty``: optional context a stage used (persona text, concept names,
  difficulty label such as ``Level 3``).
- ``trajectory``: code-interpreter steps (``kind`` = ``text`` | ``code`` | ``output``), for tool-use stages.
- ``verification``: ``status`` (``verified`` | ``gold`` | ``failed`` | ``unverified``), ``method`` (how:
  ``gold``, ``recompute``, ``inherited``, ``extract+match``, ``majority`` ...), ``votes`` (samples agreeing with
  the kept answer), ``samples`` (samples drawn), ``detail`` (the verifier's reason).
- ``generator``: the model side of provenance: ``model``, ``revision`` (the stage's main role), ``roles`` (JSON:
  role -> ``{model, revision, backend}`` for every model role the stage used: teacher, student, solver, judge),
  ``sampling`` (JSON of every sampling parameter), ``template`` (prompt template name), ``template_hash``,
  ``tokens_in``, ``tokens_out``. Empty model for LLM-free stages.
- ``dedup``: set by near-dedup on the row it keeps: ``cluster_id`` and ``dropped`` (rows folded into it).
- ``round``: the round of a repeated stage group that made the row (1, 2, ...; null outside rounds).
- ``run_id`` / ``created_at``: the build that wrote the row and when (UTC).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = "2"

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SOURCE = pa.struct(
    [("dataset", pa.string()), ("split", pa.string()), ("seed_id", pa.string()), ("subject", pa.string())]
)
STEP = pa.struct([("kind", pa.string()), ("content", pa.string())])
VERIFICATION = pa.struct(
    [
        ("status", pa.string()),
        ("method", pa.string()),
        ("votes", pa.int32()),
        ("samples", pa.int32()),
        ("detail", pa.string()),
    ]
)
GENERATOR = pa.struct(
    [
        ("model", pa.string()),
        ("revision", pa.string()),
        ("sampling", pa.string()),
        ("template", pa.string()),
        ("template_hash", pa.string()),
        ("roles", pa.string()),
        ("tokens_in", pa.int64()),
        ("tokens_out", pa.int64()),
    ]
)
DEDUP = pa.struct([("cluster_id", pa.string()), ("dropped", pa.int32())])

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("solution", pa.string()),
        pa.field("answer", pa.string()),
        pa.field("solution_raw", pa.string()),
        pa.field("messages", pa.list_(MESSAGE)),
        pa.field("source", SOURCE),
        pa.field("parent_ids", pa.list_(pa.string())),
        pa.field("method", pa.string(), nullable=False),
        pa.field("method_params", pa.string()),
        pa.field("persona", pa.string()),
        pa.field("concepts", pa.list_(pa.string())),
        pa.field("difficulty", pa.string()),
        pa.field("trajectory", pa.list_(STEP)),
        pa.field("verification", VERIFICATION),
        pa.field("generator", GENERATOR),
        pa.field("dedup", DEDUP),
        pa.field("round", pa.int32()),
        pa.field("run_id", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ],
    metadata={"mathaug.schema_version": SCHEMA_VERSION},
)

FIELDS = tuple(SCHEMA.names)
VERIFIED_STATUSES = frozenset({"verified", "gold"})


def _norm(text: str | None) -> str:
    return " ".join(unicodedata.normalize("NFKC", text or "").split())


def record_id(question: str, solution: str | None, answer: str | None) -> str:
    """Content hash: whitespace/unicode-normalised question, solution and answer."""
    payload = "\x1f".join((_norm(question), _norm(solution), _norm(answer)))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def chat_messages(question: str, solution: str | None) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": question}]
    if solution:
        messages.append({"role": "assistant", "content": solution})
    return messages


def make_record(
    *,
    question: str,
    solution: str | None,
    answer: str | None,
    method: str,
    source: Mapping[str, Any] | None = None,
    parent_ids: list[str] | None = None,
    method_params: Mapping[str, Any] | None = None,
    verification: Mapping[str, Any] | None = None,
    generator: Mapping[str, Any] | None = None,
    persona: str | None = None,
    concepts: list[str] | None = None,
    difficulty: str | None = None,
    trajectory: list[dict[str, str]] | None = None,
    messages: list[dict[str, str]] | None = None,
    round: int | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Build a complete record dict with its content id and SFT messages filled in (``messages`` overrides the
    question/solution pair, e.g. a tool-use conversation)."""
    src = {"dataset": None, "split": None, "seed_id": None, "subject": None}
    src.update(source or {})
    ver = {"status": "unverified", "method": None, "votes": None, "samples": None, "detail": None}
    ver.update(verification or {})
    gen = {
        "model": None,
        "revision": None,
        "sampling": None,
        "template": None,
        "template_hash": None,
        "roles": None,
        "tokens_in": None,
        "tokens_out": None,
    }
    gen.update(generator or {})
    if isinstance(gen.get("roles"), dict):
        gen["roles"] = json.dumps(gen["roles"], sort_keys=True)
    return {
        "id": record_id(question, solution, answer),
        "question": question,
        "solution": solution,
        "answer": answer,
        "solution_raw": None,
        "messages": list(messages) if messages else chat_messages(question, solution),
        "source": src,
        "parent_ids": list(parent_ids or []),
        "method": method,
        "method_params": json.dumps(dict(method_params), sort_keys=True) if method_params else None,
        "persona": persona,
        "concepts": list(concepts) if concepts else None,
        "difficulty": difficulty,
        "trajectory": trajectory,
        "verification": ver,
        "generator": gen,
        "dedup": None,
        "round": round,
        "run_id": run_id,
        "created_at": datetime.now(timezone.utc),
    }


def derive(
    parent: Mapping[str, Any],
    *,
    question: str,
    solution: str | None,
    answer: str | None,
    method: str,
    **fields: Any,
) -> dict[str, Any]:
    """A new record made from ``parent``: inherits its source and context, links back by id."""
    fields.setdefault("source", parent.get("source"))
    fields.setdefault("difficulty", parent.get("difficulty"))
    fields.setdefault("concepts", parent.get("concepts"))
    fields.setdefault("persona", parent.get("persona"))
    fields.setdefault("run_id", parent.get("run_id"))
    fields.setdefault("round", parent.get("round"))
    return make_record(
        question=question,
        solution=solution,
        answer=answer,
        method=method,
        parent_ids=[parent["id"]],
        **fields,
    )


def to_table(records: list[dict[str, Any]]) -> pa.Table:
    """Records → a table of exactly ``SCHEMA`` (missing keys become nulls; unknown keys are an error)."""
    for i, rec in enumerate(records):
        extra = set(rec) - set(FIELDS)
        if extra:
            raise ValueError(f"record {i} (id={rec.get('id')}) has fields outside the schema: {sorted(extra)}")
    return pa.Table.from_pylist(list(records), schema=SCHEMA)


def from_table(table: pa.Table) -> list[dict[str, Any]]:
    return table.select(list(FIELDS)).to_pylist()


CALCULATOR_ANNOTATION = re.compile(r"<<[^<>]*>>")


def strip_calculator_annotations(text: str) -> str:
    """``48/2 = <<48/2=24>>24`` -> ``48/2 = 24``: GSM8K's calculator traces, not something to teach a model."""
    return CALCULATOR_ANNOTATION.sub("", text)


def sft_view(record: dict[str, Any], strip_annotations: bool = True) -> dict[str, Any]:
    """The record as written to the dataset: annotations stripped from ``solution`` and every assistant message,
    the original kept in ``solution_raw``. The id stays the content hash of what the stages made."""
    solution = record.get("solution")
    if not strip_annotations or not solution or "<<" not in solution:
        return record
    clean = strip_calculator_annotations(solution)
    if clean == solution:
        return record
    out = dict(record)
    out["solution_raw"] = solution
    out["solution"] = clean
    out["messages"] = [
        {**m, "content": strip_calculator_annotations(m["content"])} if m.get("role") == "assistant" else m
        for m in record.get("messages") or chat_messages(record["question"], solution)
    ]
    return out
