"""The one interface stages use: ``client.complete(requests) -> completions``, whatever the backend.

It looks every request up in the request cache, sends only the misses (identical requests once), writes each
completion to the cache as it arrives, counts usage into the funnel under the stage's name, and optionally checks
each sample (``check``), counts malformed samples per reason and re-asks for them a bounded number of times.
"""

from __future__ import annotations

import hashlib
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


def _derived_seed(request: ChatRequest, tag: object) -> int:
    """A new seed per re-ask or filler (else the cache, and a seeded engine, would return the same sample)."""
    basis = request.slot or repr(request.messages)  # the slot survives template edits; messages do not
    digest = hashlib.sha256(f"{request.seed}|{basis}|{tag}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _slot(request: ChatRequest, tag: object) -> str | None:
    return f"{request.slot}|{tag}" if request.slot else None

