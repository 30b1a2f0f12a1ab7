"""Request cache: SQLite (WAL) from request key to completion, plus per-run hit/miss counts with reasons.

The key hashes four parts: the model identity, the rendered messages, every sampling parameter (seed and ``n``
included) and the prompt template (name and content hash). Each part's hash is stored beside the entry, so a
miss can be explained: the nearest earlier entry for the same request ``slot`` (or, without a slot, the same
messages) shows which parts differ (``template``, ``messages``, ``sampling``, ``model``) or that the request is
``new``. Only successful completions are stored; failed requests are asked again on the next run.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.llm.types import ChatRequest, Completion

PARTS = ("model", "messages", "sampling", "template")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    model_hash TEXT NOT NULL,
    messages_hash TEXT NOT NULL,
    sampling_hash TEXT NOT NULL,
    template_hash TEXT NOT NULL,
    template TEXT,
    slot TEXT,
    stage TEXT,
    response TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_slot ON entries(slot);
CREATE INDEX IF NOT EXISTS entries_messages ON entries(messages_hash);
CREATE TABLE IF NOT EXISTS sessions (session TEXT PRIMARY KEY, started REAL NOT NULL, label TEXT);
CREATE TABLE IF NOT EXISTS lookups (
    session TEXT NOT NULL,
    stage TEXT NOT NULL,
    outcome TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (session, stage, outcome)
);
"""


def _h(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RequestKey:
    """The cache key of one request and the hashes of its four parts."""

    key: str
    model: str
    messages: str
    sampling: str
    template: str

    @classmethod
    def of(cls, model_identity: Mapping[str, Any], request: ChatRequest) -> RequestKey:
        parts = {
            "model": _h(dict(model_identity)),
            "messages": _h(request.messages),
            "sampling": _h(request.sampling()),
            "template": _h({"name": request.template, "sha256": request.template_hash}),
        }
        return cls(key=_h(parts), **parts)


class RequestCache:
    """Thread-safe; one connection per cache object, commits in batches (``flush``) to keep writes cheap."""

    def __init__(self, path: Path, session: str | None = None, label: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=60000")
        self._db.executescript(_SCHEMA)
        self._pending: list[tuple[Any, ...]] = []
        self._outcomes: dict[tuple[str, str], int] = {}
        self.session = session or f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO sessions(session, started, label) VALUES (?, ?, ?)",
                (self.session, time.time(), label),
            )

    # -- reads -------------------------------------------------------------------------------------------
    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, Completion] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for key, response in self._db.execute(
                    f"SELECT key, response FROM entries WHERE key IN ({marks})", chunk
                ):
                    found[key] = Completion.from_json(json.loads(response), cached=True)
        return found

    def explain_miss(self, rk: RequestKey, slot: str | None) -> str:
        """Which key parts differ from the nearest earlier entry for this request (``new`` if none)."""
        cols = "model_hash, messages_hash, sampling_hash, template_hash"
        with self._lock:
            if slot:
                rows = self._db.execute(
                    f"SELECT {cols} FROM entries WHERE slot = ? ORDER BY created DESC LIMIT 50", (slot,)
                ).fetchall()
            else:
                rows = self._db.execute(
                    f"SELECT {cols} FROM entries WHERE messages_hash = ? ORDER BY created DESC LIMIT 50",
                    (rk.messages,),
                ).fetchall()
        if not rows:
            return "new"
        mine = (rk.model, rk.messages, rk.sampling, rk.template)
        best: list[str] | None = None
        for row in rows:
            changed = [part for part, a, b in zip(PARTS, mine, row, strict=True) if a != b]
            if "template" in changed and "messages" in changed:
                changed.remove("messages")  # a new template renders new messages: the template is the cause
            if best is None or len(changed) < len(best):
                best = changed
        return "+".join(best) if best else "duplicate"

    # -- writes ------------------------------------------------------------------------------------------
    def put(self, rk: RequestKey, request: ChatRequest, stage: str, completion: Completion) -> None:
        if completion.error is not None:
            return
        row = (
            rk.key,
            rk.model,
            rk.messages,
            rk.sampling,
            rk.template,
            request.template,
            request.slot,
            stage,
            json.dumps(completion.to_json(), ensure_ascii=False),
            time.time(),
        )
        with self._lock:
            self._pending.append(row)

    def count(self, stage: str, outcome: str, n: int = 1) -> None:
        with self._lock:
            self._outcomes[(stage, outcome)] = self._outcomes.get((stage, outcome), 0) + n

    def flush(self) -> None:
        """Commit pending entries and counters (called every few hundred completions and at the end)."""
        with self._lock:
            rows, self._pending = self._pending, []
            outcomes, self._outcomes = self._outcomes, {}
            if not rows and not outcomes:
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
                self._db.executemany(
                    "INSERT INTO lookups(session, stage, outcome, n) VALUES (?,?,?,?) "
                    "ON CONFLICT(session, stage, outcome) DO UPDATE SET n = n + excluded.n",
                    [(self.session, stage, outcome, n) for (stage, outcome), n in outcomes.items()],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()


def cache_stats(path: Path, session: str | None = None) -> dict[str, Any]:
    """Hits, misses and miss reasons per stage for one run (default: the latest) of the cache at ``path``."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        sessions = [s for (s,) in db.execute("SELECT session FROM sessions ORDER BY started")]
        entries = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        if session == "all":
            rows = db.execute("SELECT stage, outcome, SUM(n) FROM lookups GROUP BY stage, outcome").fetchall()
            chosen = "all"
        else:
            with_lookups = [s for (s,) in db.execute("SELECT DISTINCT session FROM lookups")]
            chosen = session or next((s for s in reversed(sessions) if s in with_lookups), None)
            if session and session not in sessions:
                raise ValueError(f"no run {session!r} in {path}; runs: {sessions}")
            rows = db.execute("SELECT stage, outcome, n FROM lookups WHERE session = ?", (chosen,)).fetchall()
    finally:
        db.close()
    stages: dict[str, dict[str, Any]] = {}
    for stage, outcome, n in rows:
        st = stages.setdefault(stage, {"hits": 0, "misses": 0, "miss_reasons": {}})
        if outcome == "hit":
            st["hits"] += int(n)
        else:
            st["misses"] += int(n)
            reason = outcome.split(":", 1)[1] if ":" in outcome else outcome
            st["miss_reasons"][reason] = st["miss_reasons"].get(reason, 0) + int(n)
    return {
        "path": str(path),
        "session": chosen,
        "sessions": len(sessions),
        "entries": entries,
        "stages": stages,
    }
