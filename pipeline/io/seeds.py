"""Seed loading: GSM8K, MATH, and any JSONL / JSON / Parquet / CSV / ``datasets`` spec with a field mapping.

Every seed becomes a record (``method="seed"``, ``verification.status="gold"``) whose ``source.seed_id`` is
``<name>:<line>``, stable across runs. Bad input raises ``SeedError`` naming file, line and field, unless the
caller asked to skip bad rows, in which case they are counted in ``LoadReport.skipped``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.records import make_record

SeedFormat = Literal["gsm8k", "math", "jsonl", "json", "parquet", "csv", "hf"]

GSM8K_GOLD = re.compile(r"####\s*(.+?)\s*$", re.S)
DEFAULT_MAX_FIELD_CHARS = 20_000  # a real problem or solution is a few thousand characters at most
NUMBER = re.compile(r"^[-+]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?$")


class SeedSpec(BaseModel):
    """One seed source in a recipe."""

    model_config = ConfigDict(extra="forbid")

    format: SeedFormat
    path: str | None = Field(None, description="file path (relative paths resolve against the recipe's folder)")
    hf: dict[str, Any] | None = Field(None, description="datasets.load_dataset kwargs, for format: hf")
    name: str | None = Field(None, description="dataset name recorded in source.dataset (default: format/file)")
    split: str = "train"
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="map of record field -> column in the file: question, solution, answer, subject, difficulty",
    )
    gold: Literal["auto", "gsm8k", "boxed", "field"] = "auto"
    limit: int | None = Field(None, ge=1)
    max_field_chars: int = Field(
        DEFAULT_MAX_FIELD_CHARS, ge=1, description="a row whose question, solution or answer is longer is bad"
    )


class SeedError(ValueError):
    """A seed row that cannot be used; the message names the file, the line and the field."""

    def __init__(self, file: str, line: int | None, field_name: str | None, message: str) -> None:
        where = file if line is None else f"{file}:{line}"
        what = f" field {field_name!r}:" if field_name else ""
        super().__init__(f"{where}:{what} {message}")
        self.file, self.line, self.field = file, line, field_name


@dataclass
class LoadReport:
    loaded: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` with nested braces, or None."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


def gsm8k_gold(solution: str) -> str | None:
    """The number after ``####``, commas removed; None if absent or not a number."""
    match = GSM8K_GOLD.search(solution)
    if not match:
        return None
    value = match.group(1).replace(",", "").replace("$", "").strip()
    return value if NUMBER.match(value) and value not in {"", "+", "-"} else None


# --------------------------------------------------------------------------------------------------- raw rows


SKIP_HINT = "; re-encode the file as UTF-8 or use --skip-bad-rows"


def _decode_line(path: Path, lineno: int, raw: bytes, offset: int, hint: str = SKIP_HINT) -> str | SeedError:
    """A line as text, or the error naming the first byte that is not UTF-8 (offset from the file's start)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return SeedError(
            str(path), lineno, None,
            f"not UTF-8: byte 0x{raw[exc.start]:02x} at byte offset {offset + exc.start} "
            f"(column {exc.start + 1} of the line){hint}",
        )


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | SeedError]]:
    """Rows by line; a bad line is yielded as its ``SeedError`` so the caller can skip it and go on."""
    offset = 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line, offset = _decode_line(path, lineno, raw, offset), offset + len(raw)
            if isinstance(line, SeedError):
                yield lineno, line
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, SeedError(str(path), lineno, None, f"invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(row, dict):
                yield lineno, SeedError(str(path), lineno, None, f"expected a JSON object, got {type(row).__name__}")
                continue
            yield lineno, row


def _read_utf8(path: Path) -> str:
    """A whole JSON document as text; a byte that is not UTF-8 is a ``SeedError`` naming its line and offset."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = raw.rfind(b"\n", 0, exc.start) + 1
        end = raw.find(b"\n", exc.start)
        line = raw[start : len(raw) if end < 0 else end]
        error = _decode_line(path, raw.count(b"\n", 0, exc.start) + 1, line, start, hint="")
        raise error if isinstance(error, SeedError) else SeedError(str(path), None, None, "not UTF-8") from None


def _iter_json(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        data = json.loads(_read_utf8(path))
    except json.JSONDecodeError as exc:
        raise SeedError(str(path), exc.lineno, None, f"invalid JSON ({exc.msg})") from None
    if isinstance(data, dict):  # {"data": [...]} or {"rows": [...]}
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list):
        raise SeedError(str(path), None, None, "expected a JSON array of objects")
    for i, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise SeedError(str(path), i, None, f"item {i} is not an object")
        yield i, row


def _iter_csv(path: Path) -> Iterator[tuple[int, dict[str, Any] | SeedError]]:
    """Rows with their last line number; a row holding bytes that are not UTF-8 is yielded as its error."""
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    offsets = list(itertools.accumulate((len(line) + 1 for line in lines), initial=0))

    def bad_line(first: int, last: int) -> SeedError | None:
        for n in range(first, min(last, len(lines)) + 1):
            decoded = _decode_line(path, n, lines[n - 1], offsets[n - 1])
            if isinstance(decoded, SeedError):
                return decoded
        return None

    with io.StringIO(raw.decode("utf-8", errors="surrogateescape"), newline="") as fh:
        reader = csv.DictReader(fh)
        header_error = bad_line(1, 1)
        if header_error is not None:
            raise header_error
        first = 2
        for row in reader:
            yield reader.line_num, bad_line(first, reader.line_num) or dict(row)
            first = reader.line_num + 1


def _iter_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise SeedError(str(path), None, None, f"not a readable Parquet file ({exc})") from None
    row_no = 0
    for batch in pf.iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            row_no += 1
            yield row_no, row


def _iter_hf(spec: SeedSpec) -> Iterator[tuple[int, dict[str, Any]]]:
    import datasets

    kwargs = dict(spec.hf or {})
    kwargs.setdefault("split", spec.split)
    ds = datasets.load_dataset(**kwargs)
    for i, row in enumerate(ds, start=1):
        yield i, dict(row)


def _raw_rows(spec: SeedSpec, path: Path | None) -> Iterator[tuple[int, dict[str, Any] | SeedError]]:
    if spec.format == "hf":
        return _iter_hf(spec)
    assert path is not None
    if not path.exists():
        raise SeedError(str(path), None, None, "file not found")
    if path.stat().st_size == 0:
        raise SeedError(str(path), None, None, "file is empty")
    suffix = path.suffix.lower()
    if spec.format in ("gsm8k", "math", "jsonl"):
        if suffix == ".parquet":
            return _iter_parquet(path)
        if suffix == ".json":
            return _iter_json(path)
        return _iter_jsonl(path)
    return {"json": _iter_json, "csv": _iter_csv, "parquet": _iter_parquet}[spec.format](path)


# --------------------------------------------------------------------------------------------- normalisation

DEFAULT_FIELDS = {
    "gsm8k": {"question": "question", "solution": "answer"},
    "math": {"question": "problem", "solution": "solution", "answer": "answer", "subject": "subject",
             "difficulty": "level"},
    "generic": {"question": "question", "solution": "solution", "answer": "answer"},
}


def _resolve_fields(spec: SeedSpec) -> dict[str, str]:
    base = DEFAULT_FIELDS.get(spec.format, DEFAULT_FIELDS["generic"])
    return {**base, **spec.fields}


def _text(row: dict[str, Any], column: str | None) -> str | None:
    if column is None or column not in row or row[column] is None:
        return None
    value = row[column]
    return value if isinstance(value, str) else str(value)


def _gold_mode(spec: SeedSpec) -> str:
    if spec.gold != "auto":
        return spec.gold
    return {"gsm8k": "gsm8k", "math": "boxed"}.get(spec.format, "field")


def seed_record(spec: SeedSpec, file_label: str, line: int, row: dict[str, Any]) -> dict[str, Any]:
    """One raw row → a seed record, or ``SeedError`` naming the field that is wrong."""
    cols = _resolve_fields(spec)
    for name in ("question", "solution", "answer", "subject", "difficulty"):
        value = row.get(cols[name]) if cols.get(name) else None
        if isinstance(value, str) and len(value) > spec.max_field_chars:
            raise SeedError(
                file_label, line, cols[name],
                f"{len(value):,} characters, over the limit of {spec.max_field_chars:,} (max_field_chars of the seed)",
            )
    question = _text(row, cols.get("question"))
    if not question or not question.strip():
        raise SeedError(file_label, line, cols.get("question"), "missing or empty question")
    solution = _text(row, cols.get("solution"))
    answer = _text(row, cols.get("answer"))
    mode = _gold_mode(spec)
    if mode == "gsm8k":
        if not solution:
            raise SeedError(file_label, line, cols.get("solution"), "missing solution (GSM8K gold lives after ####)")
        answer = gsm8k_gold(solution)
        if answer is None:
            raise SeedError(file_label, line, cols.get("solution"), "unreadable gold answer: no '#### <number>'")
    elif mode == "boxed":
        if not answer or not answer.strip():
            answer = last_boxed(solution or "")
        if not answer:
            raise SeedError(
                file_label, line, cols.get("answer"), "unreadable gold answer: no answer field and no \\boxed{}"
            )
    elif not answer or not answer.strip():
        if solution and (boxed := last_boxed(solution)):
            answer = boxed
        elif solution and (hashed := gsm8k_gold(solution)):
            answer = hashed
        else:
            raise SeedError(file_label, line, cols.get("answer"), "missing gold answer")
    name = spec.name or (spec.format if spec.format in ("gsm8k", "math") else Path(file_label).stem)
    difficulty = _text(row, cols.get("difficulty"))
    return make_record(
        question=question.strip(),
        solution=solution.strip() if solution else None,
        answer=answer.strip(),
        method="seed",
        source={
            "dataset": name,
            "split": spec.split,
            "seed_id": f"{Path(file_label).stem}:{line}",
            "subject": _text(row, cols.get("subject")),
        },
        verification={"status": "gold", "method": "gold", "detail": "seed gold answer"},
        difficulty=f"Level {difficulty}" if difficulty and difficulty.isdigit() else difficulty,
    )


def load_seeds(
    spec: SeedSpec, base_dir: Path | None = None, skip_bad_rows: bool = False, report: LoadReport | None = None
) -> list[dict[str, Any]]:
    """All seed records of one source (at most ``spec.limit``)."""
    report = report if report is not None else LoadReport()
    path = None
    if spec.format != "hf":
        if not spec.path:
            raise SeedError("<recipe>", None, "path", f"seed format {spec.format!r} needs a path")
        path = Path(spec.path).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
    label = str(path) if path else f"hf:{(spec.hf or {}).get('path')}"
    records: list[dict[str, Any]] = []
    for line, row in _raw_rows(spec, path):
        try:
            if isinstance(row, SeedError):
                raise row
            records.append(seed_record(spec, label, line, row))
        except SeedError as exc:
            if not skip_bad_rows:
                raise
            report.skipped += 1
            report.errors.append(str(exc))
            continue
        report.loaded += 1
        if spec.limit and len(records) >= spec.limit:
            break
    if not records and not report.skipped:
        raise SeedError(label, None, None, "no rows")
    return records
