"""Conversations that proceed on their own: no lock-step turns.

A multi-turn stage (code-interpreter trajectories: generate, stop at the code's output fence, run the code,
continue) would idle the engine if every turn of a batch waited for the slowest trajectory. Here each
conversation's next turn is submitted the moment its previous turn is handled, while other conversations are
still generating: the backend takes requests from a ``RequestFeed`` that grows while it runs.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from pipeline.llm.types import ChatRequest, Completion

# (conversation tag, request, its cache key)
FeedItem = tuple[int, ChatRequest, Any]


class RequestFeed:
    """Requests of open conversations, in arrival order; finished when every conversation is closed.

    ``put`` and ``close`` may be called from any thread. A backend takes requests with ``next`` and hands each
    result to ``answer``, which the client turns into the conversation's next request (or its end).
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[FeedItem] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._open: set[int] = set()
        self._changed = threading.Condition(self._lock)
        self.error: BaseException | None = None
        # set by the client: takes a finished request's completion (caches it, runs the conversation's next turn)
        self.answer: Callable[[FeedItem, Completion], None] = lambda item, completion: None

    def open(self, tag: int) -> None:
        with self._lock:
            self._open.add(tag)

    def put(self, tag: int, request: ChatRequest, key: Any = None) -> None:
        self._queue.put((tag, request, key))
        with self._changed:
            self._changed.notify_all()

    def close(self, tag: int) -> None:
        with self._changed:
            self._open.discard(tag)
            self._changed.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._changed:
            if self.error is None:
                self.error = error
            self._open.clear()
            self._changed.notify_all()

    @property
    def finished(self) -> bool:
        with self._lock:
            return (not self._open and self._queue.empty()) or self.error is not None

    def next(self, timeout: float = 0.05) -> FeedItem | None:
        """The next queued request, waiting up to ``timeout``; None when nothing came (check ``finished``)."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def try_next(self) -> FeedItem | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def drain(self) -> list[FeedItem]:
        """Every request queued right now (for backends that take them in bunches)."""
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items
