"""The `openai` backend and the client over real HTTP against a scripted OpenAI-protocol server: concurrency
bound, retries, clear errors, timeouts, malformed-output re-asks, caching and resume after a server crash."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.funnel import Funnel
from pipeline.llm import (
    BackendAuthError,
    BackendUnavailableError,
    ChatRequest,
    ModelConfig,
    ModelNotFoundError,
    ModelPool,
)
from tests.fixtures.scripted_openai import ScriptedOpenAIServer


def _config(server: ScriptedOpenAIServer, **kw: Any) -> ModelConfig:
    kw.setdefault("max_concurrency", 4)
    kw.setdefault("max_retries", 3)
    kw.setdefault("request_timeout_s", 10)
    kw.setdefault("retry_backoff_s", 0.05)
    return ModelConfig(backend="openai", model=server.model, base_url=server.base_url, **kw)


def _requests(count: int, **kw: Any) -> list[ChatRequest]:
    return [ChatRequest(messages=[{"role": "user", "content": f"q{i}"}], seed=i, **kw) for i in range(count)]


def test_completions_usage_and_rerun_from_cache(
    scripted_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    funnel = Funnel()
    with ModelPool({"t": _config(scripted_server)}, tmp_path / "c.sqlite", funnel) as pool:
        client = pool.client("t", stage="s")
        out = client.complete(_requests(10, n=3) + _requests(2, n=3))  # the last two repeat the first two
    assert [c.texts[2] for c in out[:2]] == ["sample 2: q0", "sample 2: q1"]
    assert all(len(c.texts) == 3 and c.finish_reasons == ["stop"] * 3 for c in out)
    assert len(scripted_server.received) == 10  # identical requests are sent once
    assert funnel.get("s", "requests") == 10 and funnel.get("s", "cache_hits") == 2
    assert funnel.get("s", "tokens_in") == 10 and funnel.get("s", "tokens_out") == 10 * 3 * 3
    assert funnel.get("s", "llm_seconds") > 0

    again = Funnel()
    with ModelPool({"t": _config(scripted_server)}, tmp_path / "c.sqlite", again) as pool:
        out2 = pool.client("t", stage="s").complete(_requests(10, n=3))
    assert len(scripted_server.received) == 10 and again.get("s", "requests") == 0
    assert again.get("s", "cache_hits") == 10 and all(c.cached for c in out2)
    assert [c.texts for c in out2] == [c.texts for c in out[:10]]


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(delay_s=0.05) as server:
        with ModelPool({"t": _config(server, max_concurrency=3)}, None) as pool:
            pool.client("t", "s").complete(_requests(24))
        assert server.max_in_flight == 3


def test_retries_429_and_5xx_then_succeeds(scripted_server: ScriptedOpenAIServer) -> None:
    scripted_server.fail_next(429, 2, {"Retry-After": "0"})
    scripted_server.fail_next(503, 2)
    started = time.monotonic()
    funnel = Funnel()
    with ModelPool({"t": _config(scripted_server, max_concurrency=1, max_retries=5)}, None, funnel) as pool:
        out = pool.client("t", "s").complete(_requests(3))
    assert all(c.ok and c.texts for c in out)
    assert len(scripted_server.received) == 3 + 4
    assert funnel.get("s", "requests") == 3  # retries are not new requests
    assert time.monotonic() - started < 3  # Retry-After: 0 honoured, short backoff otherwise


def test_one_rejected_request_does_not_fail_the_batch(scripted_server: ScriptedOpenAIServer) -> None:
    scripted_server.fail_next(400, 1)
    funnel = Funnel()
    with ModelPool({"t": _config(scripted_server, max_concurrency=1)}, None, funnel) as pool:
        out = pool.client("t", "s").complete(_requests(3))
    assert not out[0].ok and "HTTP 400" in (out[0].error or "")
    assert out[1].ok and out[2].ok and funnel.get("s", "request_errors") == 1


def test_persistent_5xx_becomes_a_failed_completion(scripted_server: ScriptedOpenAIServer) -> None:
    scripted_server.fail_next(500, 3)
    with ModelPool({"t": _config(scripted_server, max_concurrency=1, max_retries=2)}, None) as pool:
        out = pool.client("t", "s").complete(_requests(2))
    assert "HTTP 500 after 3 attempts" in (out[0].error or "") and out[1].ok


def test_clear_errors_absent_server_wrong_model_missing_key(scripted_server: ScriptedOpenAIServer) -> None:
    dead = ModelConfig(
        backend="openai", model="x", base_url="http://127.0.0.1:9/v1", max_retries=2, retry_backoff_s=0.1
    )
    started = time.monotonic()
    with (
        ModelPool({"t": dead}, None) as pool,
        pytest.raises(BackendUnavailableError, match="no OpenAI-compatible"),
    ):
        pool.client("t", "s").complete(_requests(1))
    assert time.monotonic() - started < 15  # bounded retries, never a hang

    wrong = ModelConfig(backend="openai", model="gpt-nope", base_url=scripted_server.base_url)
    with (
        ModelPool({"t": wrong}, None) as pool,
        pytest.raises(ModelNotFoundError, match="serves \\['scripted'\\]"),
    ):
        pool.client("t", "s").complete(_requests(1))

    keyed = _config(scripted_server, api_key_env="MATHAUG_TEST_UNSET_KEY")
    with (
        ModelPool({"t": keyed}, None) as pool,
        pytest.raises(BackendAuthError, match="MATHAUG_TEST_UNSET_KEY"),
    ):
        pool.client("t", "s").complete(_requests(1))

    with (
        ModelPool({"t": _config(scripted_server)}, None) as pool,
        pytest.raises(KeyError, match="known: \\['t'\\]"),
    ):
        pool.client("teacher", "s")


def test_per_request_timeout(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(delay_s=3) as server:
        cfg = _config(server, request_timeout_s=0.3, max_retries=1)
        started = time.monotonic()
        with ModelPool({"t": cfg}, None) as pool:
            out = pool.client("t", "s").complete(_requests(2))
        assert all("timed out" in (c.error or "") for c in out)
        assert time.monotonic() - started < 6


def test_malformed_samples_are_counted_and_reasked(scripted_server: ScriptedOpenAIServer) -> None:
    def responder(body: dict[str, Any], i: int) -> str | tuple[str, str]:
        q = body["messages"][-1]["content"]
        if q == "q0":
            return ("cut off", "length")
        if q == "q1" and body["n"] == 2 and i == 0:
            return "no box here"  # first ask: sample 0 bad; the re-ask (n=1) answers well
        return "so \\boxed{4}"

    scripted_server.responder = responder

    def check(i: int, text: str, finish: str) -> str | None:
        if finish == "length":
            return "truncated"
        return None if "\\boxed" in text else "no_answer"

    funnel = Funnel()
    with ModelPool({"t": _config(scripted_server)}, None, funnel) as pool:
        out = pool.client("t", "s").complete(_requests(3, n=2), check=check, max_reasks=2)
    assert out[0].problems == ["truncated", "truncated"] and out[0].good_texts() == []
    assert out[1].problems == [None, None] and out[1].texts == ["so \\boxed{4}", "so \\boxed{4}"]
    assert out[2].problems == [None, None]
    assert funnel.get("s", "malformed:truncated") == 6  # 2 on the first ask + 2 per re-ask
    assert funnel.get("s", "malformed:no_answer") == 1
    assert funnel.get("s", "reasks") == 2 + 1 + 2
    assert funnel.get("s", "requests") == 3 + 2 + 1  # the re-asks are new requests (new seeds)


def test_server_killed_mid_stage_retries_then_resumes(tmp_path: Path) -> None:
    """Crash the server mid-stage: the stage retries; with the server back it completes, and no request that
    was answered before the crash is sent again. Then a crash that outlasts the retries raises, and the rerun
    sends only what was not finished."""
    server = ScriptedOpenAIServer(delay_s=0.02).start()
    try:
        cfg = _config(server, max_concurrency=4, max_retries=8)
        reqs = _requests(200)
        funnel = Funnel()

        def crash_and_restart() -> None:
            while len(server.answered) < 40:
                time.sleep(0.005)
            server.kill()
            time.sleep(1.0)
            server.start()

        bg = threading.Thread(target=crash_and_restart)
        bg.start()
        with ModelPool({"t": cfg}, tmp_path / "c.sqlite", funnel) as pool:
            out = pool.client("t", "s").complete(reqs)
        bg.join()
        assert all(c.ok for c in out) and funnel.get("s", "requests") == 200
        contents = [b["messages"][0]["content"] for b in server.answered]
        assert len(contents) == len(set(contents)) == 200  # every request answered exactly once

        # a crash that outlasts the bounded retries: clear error, finished work kept
        server.answered.clear()
        more = _requests(300)  # the first 200 are cached
        cfg = _config(server, max_concurrency=4, max_retries=1)

        def crash() -> None:
            while len(server.answered) < 30:
                time.sleep(0.005)
            server.kill()

        bg = threading.Thread(target=crash)
        bg.start()
        with ModelPool({"t": cfg}, tmp_path / "c.sqlite", Funnel()) as pool:
            with pytest.raises(BackendUnavailableError, match="rerun to resume"):
                pool.client("t", "s").complete(more)
        bg.join()
        finished = len(server.answered)
        assert 30 <= finished < 100
        server.start()
        server.answered.clear()
        resumed = Funnel()
        with ModelPool({"t": cfg}, tmp_path / "c.sqlite", resumed) as pool:
            out = pool.client("t", "s").complete(more)
        assert all(c.ok for c in out)
        assert resumed.get("s", "requests") == 100 - finished == len(server.answered)
        assert resumed.get("s", "cache_hits") == 200 + finished
    finally:
        server.kill()
