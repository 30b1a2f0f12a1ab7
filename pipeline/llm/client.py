"""The one interface stages use: ``client.complete(requests) -> completions``, whatever the backend.

It looks every request up in the request cache, sends only the misses (identical requests once), writes each
completion to the cache as it arrives, counts usage into the funnel under the stage's name, and optionally checks
each sample (``check``), counts malformed samples per reason and re-asks for them a bounded number of times.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from pipeline.funnel import Funnel
from pipeline.llm.cache import RequestCache, RequestKey
from pipeline.llm.types import ChatRequest, Completion

FLUSH_EVERY = 256
FLUSH_SECONDS = 2.0

# check(request index, text, finish_reason) -> None when the sample is usable, else a short reason
# ("truncated", "no_answer"); the index lets a check compare a sample with its own input.
Check = Callable[[int, str, str], "str | None"]


class Backend(Protocol):
    def generate(
        self, requests: Sequence[ChatRequest], on_done: Callable[[int, Completion], None]
    ) -> None: ...

    def close(self) -> None: ...


class LLMClient:
    """A model bound to one stage: what it sends and what it gets is counted under ``stage``."""

    def __init__(
        self,
        *,
        name: str,
        model: str,
        revision: str | None,
        identity: Mapping[str, Any],
        backend: Callable[[], Backend],
        cache: RequestCache | None,
        funnel: Funnel,
        stage: str,
    ) -> None:
        self.name = name
        self.model = model
        self.revision = revision
        self.identity = dict(identity)
        self._backend_factory = backend
        self.cache = cache
        self.funnel = funnel
        self.stage = stage
        self.usage: dict[str, float] = {
            "requests": 0,
            "cache_hits": 0,
            "tokens_in": 0,
            "tokens_out": 0,
            "llm_seconds": 0.0,
        }

    def _count(self, key: str, n: float) -> None:
        if n:
            self.usage[key] = self.usage.get(key, 0) + n
            self.funnel.add(self.stage, key, n)

    def complete(
        self,
        requests: Sequence[ChatRequest],
        *,
        check: Check | None = None,
        max_reasks: int = 0,
    ) -> list[Completion]:
        """Completions in request order. With ``check``, each sample's problem (or None) is in ``problems``,
        every malformed sample is counted as ``malformed:<reason>``, and bad samples are asked again up to
        ``max_reasks`` times (with a fresh seed), replacing them when the new sample passes."""
        start = time.perf_counter()
        try:
            results = self._complete(requests)
            self._fill_missing_samples(requests, results)
            if check is not None:
                self._check_and_reask(requests, results, check, max_reasks)
            return results
        finally:
            self._count("llm_seconds", time.perf_counter() - start)

    def _complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        keys = [RequestKey.of(self.identity, r) for r in requests]
        results: list[Completion | None] = [None] * len(requests)
        hits = self.cache.get_many(k.key for k in keys) if self.cache else {}
        todo: dict[str, list[int]] = {}
        for i, rk in enumerate(keys):
            if rk.key in hits:
                results[i] = hits[rk.key]
            else:
                todo.setdefault(rk.key, []).append(i)
        served = len(requests) - len(todo)  # from the cache, or a repeat of a request in this batch
        self._count("cache_hits", served)
        if self.cache is not None:
            self.cache.count(self.stage, "hit", served)
            for positions in todo.values():
                i = positions[0]
                self.cache.count(self.stage, "miss:" + self.cache.explain_miss(keys[i], requests[i].slot))
        send = [positions[0] for positions in todo.values()]
        last_flush = time.monotonic()

        def on_done(j: int, completion: Completion) -> None:
            nonlocal last_flush
            i = send[j]
            for pos in todo[keys[i].key]:
                results[pos] = completion
            self._count("requests", 1)  # counted when answered: a stage that dies mid-way counts what it got
            self._count("tokens_in", completion.prompt_tokens)
            self._count("tokens_out", completion.completion_tokens)
            if completion.error is not None:
                self.funnel.add(self.stage, "request_errors", 1)
            if self.cache is not None:
                self.cache.put(keys[i], requests[i], self.stage, completion)
                if self.cache.pending() >= FLUSH_EVERY or time.monotonic() - last_flush > FLUSH_SECONDS:
                    self.cache.flush()
                    last_flush = time.monotonic()

        if send:
            backend = self._backend_factory()
            try:
                backend.generate([requests[i] for i in send], on_done)
            finally:
                if self.cache is not None:
                    self.cache.flush()
        elif self.cache is not None:
            self.cache.flush()
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise RuntimeError(
                f"backend returned no completion for {len(missing)} request(s), e.g. #{missing[0]}"
            )
        return results  # type: ignore[return-value]

    def converse(
        self,
        first: Sequence[ChatRequest],
        on_done: Callable[[int, Completion], ChatRequest | None],
        *,
        parallel: int = 4,
    ) -> None:
        """Run conversations that proceed on their own (``stream.py``): conversation ``i`` starts with
        ``first[i]``; each completion goes to ``on_done(i, completion)`` (in a pool of ``parallel`` threads, so
        tool calls of different conversations overlap), which returns the conversation's next request or None
        when it is over. The next request is sent at once, while other conversations are still generating.

        Requests are one sample each (``n=1``); every one is looked up in and written to the request cache like
        ``complete``'s, so a rerun replays each conversation from the cache without sending anything.
        """
        from concurrent.futures import ThreadPoolExecutor

        from pipeline.llm.stream import FeedItem, RequestFeed

        if any(r.n != 1 for r in first):
            raise ValueError("converse takes one-sample requests (n=1): each sample is its own conversation")
        feed = RequestFeed()
        start = time.perf_counter()
        workers = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="mathaug-turn")

        def handle(tag: int, completion: Completion) -> None:
            def turn() -> None:
                try:
                    nxt = on_done(tag, completion)
                    if nxt is None:
                        feed.close(tag)
                    else:
                        submit(tag, nxt)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    feed.fail(exc)

            workers.submit(turn)

        def submit(tag: int, request: ChatRequest) -> None:
            if request.n != 1:
                raise ValueError("converse takes one-sample requests (n=1)")
            key = RequestKey.of(self.identity, request)
            hit = self.cache.get_many([key.key]).get(key.key) if self.cache else None
            if self.cache is not None:
                self.cache.count(self.stage, "hit" if hit else "miss:" + self.cache.explain_miss(key, request.slot))
            if hit is not None:
                self._count("cache_hits", 1)
                handle(tag, hit)
            else:
                feed.put(tag, request, key)

        def answered(item: FeedItem, completion: Completion) -> None:
            tag, request, key = item
            self._count("requests", 1)
            self._count("tokens_in", completion.prompt_tokens)
            self._count("tokens_out", completion.completion_tokens)
            if completion.error is not None:
                self.funnel.add(self.stage, "request_errors", 1)
            elif self.cache is not None:
                self.cache.put(key, request, self.stage, completion)
                with flush_lock:  # answered turns survive a kill: the cache is written as they come
                    if self.cache.pending() >= FLUSH_EVERY or time.monotonic() - last_flush[0] > FLUSH_SECONDS:
                        self.cache.flush()
                        last_flush[0] = time.monotonic()
            handle(tag, completion)

        flush_lock = threading.Lock()
        last_flush = [time.monotonic()]
        feed.answer = answered
        try:
            for tag in range(len(first)):
                feed.open(tag)
            for tag, request in enumerate(first):
                submit(tag, request)
            backend = self._backend_factory()
            stream = getattr(backend, "generate_stream", None)
            if stream is not None:
                stream(feed)
            else:
                _lock_step(backend, feed)
            if feed.error is not None:
                raise feed.error
        finally:
            workers.shutdown(wait=True)
            if self.cache is not None:
                self.cache.flush()
            self._count("llm_seconds", time.perf_counter() - start)

    def _fill_missing_samples(self, requests: Sequence[ChatRequest], results: list[Completion]) -> None:
        """Samples you asked for are samples you got: a server that returns fewer than ``n`` choices (llama.cpp
        ignores ``n``) gets the missing ones asked as separate one-sample requests with their own seeds.

        Each filler is an ordinary cached request, so a rerun answers it from the cache too.
        """
        for attempt in range(1, 3):  # a filler may itself come back empty: one more pass, then give up
            short = [
                (i, requests[i].n - len(c.texts))
                for i, c in enumerate(results)
                if c.ok and len(c.texts) < requests[i].n
            ]
            if not short:
                return
            owners: list[int] = []
            fillers: list[ChatRequest] = []
            for i, missing in short:
                have = len(results[i].texts)
                for j in range(missing):
                    tag = f"fill{attempt}.{have + j}"
                    fillers.append(
                        replace(requests[i], n=1, seed=_derived_seed(requests[i], tag), slot=_slot(requests[i], tag))
                    )
                    owners.append(i)
            self._count("samples_filled", len(fillers))
            for i in set(owners):  # a cached completion may be shared by repeated requests: copy before growing
                results[i] = replace(results[i], texts=list(results[i].texts),
                                     finish_reasons=list(results[i].finish_reasons))
            for i, extra in zip(owners, self._complete(fillers), strict=True):
                comp = results[i]
                comp.prompt_tokens += extra.prompt_tokens
                comp.completion_tokens += extra.completion_tokens
                if extra.ok and extra.texts:
                    comp.texts.append(extra.texts[0])
                    comp.finish_reasons.append(extra.finish_reasons[0])
                    comp.filled += 1

    def _check_and_reask(
        self, requests: Sequence[ChatRequest], results: list[Completion], check: Check, max_reasks: int
    ) -> None:
        for i, comp in enumerate(results):
            results[i] = comp = replace(
                comp, texts=list(comp.texts), finish_reasons=list(comp.finish_reasons)
            )
            comp.problems = [check(i, t, f) for t, f in zip(comp.texts, comp.finish_reasons, strict=True)]
            self._count_problems(comp.problems)
        for attempt in range(1, max_reasks + 1):
            bad = {
                i: [s for s, p in enumerate(c.problems) if p is not None]
                for i, c in enumerate(results)
                if c.ok and any(p is not None for p in c.problems)
            }
            if not bad:
                return
            order = list(bad)
            again = [
                replace(
                    requests[i],
                    n=len(bad[i]),
                    seed=_derived_seed(requests[i], attempt),
                    slot=_slot(requests[i], f"reask{attempt}"),
                )
                for i in order
            ]
            self._count("reasks", sum(len(v) for v in bad.values()))
            for i, new in zip(order, self._complete(again), strict=True):
                comp = results[i]
                comp.prompt_tokens += new.prompt_tokens
                comp.completion_tokens += new.completion_tokens
                if not new.ok:
                    continue
                problems = [check(i, t, f) for t, f in zip(new.texts, new.finish_reasons, strict=True)]
                self._count_problems(problems)
                for s, text, finish, problem in zip(
                    bad[i], new.texts, new.finish_reasons, problems, strict=False
                ):
                    if problem is None:
                        comp.texts[s], comp.finish_reasons[s], comp.problems[s] = text, finish, None

    def _count_problems(self, problems: Sequence[str | None]) -> None:
        for p in problems:
            if p is not None:
                self.funnel.add(self.stage, f"malformed:{p}", 1)


def _lock_step(backend: Backend, feed: Any) -> None:
    """Conversations on a backend without ``generate_stream``: whatever is queued goes as one batch, repeatedly."""
    while not feed.finished:
        items = feed.drain()
        if not items:
            item = feed.next(timeout=0.05)
            if item is None:
                continue
            items = [item]
        batch = items
        backend.generate([r for _, r, _ in batch], lambda j, comp, batch=batch: feed.answer(batch[j], comp))


def _derived_seed(request: ChatRequest, tag: object) -> int:
    """A new seed per re-ask or filler (else the cache, and a seeded engine, would return the same sample)."""
    basis = request.slot or repr(request.messages)  # the slot survives template edits; messages do not
    digest = hashlib.sha256(f"{request.seed}|{basis}|{tag}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _slot(request: ChatRequest, tag: object) -> str | None:
    return f"{request.slot}|{tag}" if request.slot else None

