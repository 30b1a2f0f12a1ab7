"""Any OpenAI-compatible server (vLLM's, SGLang, llama.cpp, a hosted API) through ``openai.AsyncOpenAI``.

Bounded concurrency (a fixed pool of workers), a per-request timeout, and retries with exponential backoff and
jitter on connection errors, timeouts, 408/409/429 and 5xx. A server that stays unreachable raises
``BackendUnavailableError`` after those bounded retries; requests that finished before are already handed back
(and cached by the client), so a rerun resends only the rest. One request the server rejects (400/422, or one
that keeps timing out) becomes a failed completion, never a failed batch.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.llm.config import ModelConfig
from pipeline.llm.errors import BackendAuthError, BackendUnavailableError, ModelNotFoundError
from pipeline.llm.stream import RequestFeed
from pipeline.llm.types import ChatRequest, Completion

RETRY_STATUS = frozenset({408, 409, 429})


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: min(cap, base * 2**attempt) times a uniform factor in [0.5, 1.5)."""
    return min(cap, base * 2**attempt) * (0.5 + random.random())


def retry_after_s(exc: Exception) -> float | None:
    """The server's ``Retry-After`` (seconds) on a 429/503, when it sent one."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


async def _within(awaitable: Any, seconds: float) -> Any:
    """A hard deadline over the client's own timeout (``asyncio.timeout`` needs no extra task per request,
    unlike ``wait_for``, which costs measurable client CPU at thousands of requests)."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, timeout=seconds)


def run_coroutine(coro: Any) -> Any:
    """Run ``coro`` to completion from sync code, even when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="mathaug-openai", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


class OpenAIBackend:
    def __init__(self, config: ModelConfig) -> None:
        if not config.base_url:
            raise ValueError("openai backend needs base_url")
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.api_key = self._api_key()
        self._checked = False
        self.retries = 0  # retried attempts, for accounting

    def _api_key(self) -> str:
        env = self.config.api_key_env
        if env is None:
            return "EMPTY"  # local servers ignore the key; the client needs a non-empty one
        key = os.environ.get(env)
        if not key:
            raise BackendAuthError(f"api_key_env={env!r} but the environment variable {env} is not set")
        return key

    def _delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.config.retry_backoff_s, self.config.retry_backoff_max_s)

    def _client(self) -> Any:
        import openai

        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.api_key,
            timeout=self.config.request_timeout_s,
            max_retries=0,  # retries are ours: backoff with jitter, and a clear error at the end
        )

    async def _check_server(self, client: Any) -> None:
        """Fail early and clearly: no server at base_url, or a model name the server does not serve."""
        import openai

        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            try:
                page = await asyncio.wait_for(client.models.list(timeout=10), timeout=15)
                served = [m.id for m in page.data]
                break
            except (openai.APITimeoutError, asyncio.TimeoutError):
                # connected, but the server is busy (llama.cpp answers one request at a time): it is there;
                # the requests themselves have their own timeouts and retries
                return
            except openai.APIConnectionError as exc:
                if attempt + 1 >= attempts:
                    raise BackendUnavailableError(
                        f"no OpenAI-compatible server answers at {self.base_url} "
                        f"({type(exc).__name__} after {attempts} attempts); start it, or fix base_url"
                    ) from None
                self.retries += 1
                await asyncio.sleep(self._delay(attempt))
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise BackendAuthError(f"{self.base_url} refused the API key: {exc}") from None
            except openai.APIStatusError:
                return  # the server has no usable /models endpoint: the first request will tell
        if served and self.config.model not in served:
            raise ModelNotFoundError(
                f"the server at {self.base_url} does not serve model {self.config.model!r}; it serves {served}"
            )

    async def _one(self, client: Any, request: ChatRequest) -> Completion:
        import openai

        kwargs: dict[str, Any] = {
            "model": self.config.model,
            "messages": request.messages,
            "n": request.n,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if request.continue_final:  # vLLM's and SGLang's servers continue the last assistant turn
            kwargs["extra_body"] = {"continue_final_message": True, "add_generation_prompt": False}
        hard_timeout = self.config.request_timeout_s + 10
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            last = attempt + 1 >= attempts
            wait: float | None = None
            try:
                resp = await _within(client.chat.completions.create(**kwargs), hard_timeout)
            except (openai.APITimeoutError, asyncio.TimeoutError):
                if last:
                    return Completion.failed(
                        f"timed out after {self.config.request_timeout_s}s, {attempts} tries"
                    )
            except openai.APIConnectionError as exc:
                if last:
                    raise BackendUnavailableError(
                        f"lost the server at {self.base_url} ({exc}); gave up after {attempts} attempts. "
                        "Finished requests are cached: rerun to resume."
                    ) from None
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise BackendAuthError(f"{self.base_url} refused the API key: {exc}") from None
            except openai.NotFoundError as exc:
                raise ModelNotFoundError(
                    f"{self.base_url} answered 404 for model {self.config.model!r}: {exc}"
                ) from None
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRY_STATUS and exc.status_code < 500:
                    return Completion.failed(f"HTTP {exc.status_code}: {exc.message}")
                if last:
                    return Completion.failed(
                        f"HTTP {exc.status_code} after {attempts} attempts: {exc.message}"
                    )
                wait = retry_after_s(exc)
            else:
                return _completion(resp)
            self.retries += 1
            delay = self._delay(attempt) if wait is None else min(wait, self.config.retry_backoff_max_s)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _generate(
        self, requests: Sequence[ChatRequest], on_done: Callable[[int, Completion], None]
    ) -> None:
        client = self._client()
        try:
            if not self._checked:
                await self._check_server(client)
                self._checked = True
            queue = iter(range(len(requests)))

            async def worker() -> None:
                for i in queue:
                    on_done(i, await self._one(client, requests[i]))

            await _run_workers(worker, min(self.config.max_concurrency, len(requests)))
        finally:
            await client.close()

    def generate(self, requests: Sequence[ChatRequest], on_done: Callable[[int, Completion], None]) -> None:
        if requests:
            run_coroutine(self._generate(requests, on_done))

    def generate_stream(self, feed: RequestFeed) -> None:
        """Requests as they arrive in ``feed`` (``max_concurrency`` in flight) until every conversation ends."""
        run_coroutine(self._generate_stream(feed))

    async def _generate_stream(self, feed: RequestFeed) -> None:
        client = self._client()
        try:
            if not self._checked:
                await self._check_server(client)
                self._checked = True

            async def worker() -> None:
                while not feed.finished:
                    item = feed.try_next()
                    if item is None:
                        await asyncio.sleep(0.005)  # a conversation is running its tool: its turn comes soon
                        continue
                    feed.answer(item, await self._one(client, item[1]))

            await _run_workers(worker, self.config.max_concurrency)
        finally:
            await client.close()

    def close(self) -> None:
        """Clients live for one batch; nothing stays open between batches."""


async def _run_workers(worker: Callable[[], Any], count: int) -> None:
    """``count`` copies of ``worker`` until all end; the first error stops the others and is raised."""
    workers = [asyncio.create_task(worker()) for _ in range(count)]
    try:
        done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def _completion(resp: Any) -> Completion:
    choices = sorted(resp.choices, key=lambda c: c.index)
    usage = getattr(resp, "usage", None)
    return Completion(
        texts=[c.message.content or "" for c in choices],
        finish_reasons=[c.finish_reason or "stop" for c in choices],
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
    )
