"""The `openai` backend against vLLM's own OpenAI-compatible server (real HTTP, tiny model): counts and tokens
agree with the server's metrics, a wrong model name is a clear error, and a server killed mid-stage and restarted
costs retries, not work."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pipeline.funnel import Funnel
from pipeline.llm import ChatRequest, ModelConfig, ModelNotFoundError, ModelPool
from tests.fixtures.vllm_server import VLLMServer

pytestmark = pytest.mark.slow

METRICS = ("vllm:request_success_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total")


def _config(server: VLLMServer, **kw: object) -> ModelConfig:
    kw.setdefault("max_concurrency", 8)
    kw.setdefault("request_timeout_s", 60)
    return ModelConfig(backend="openai", model=server.served_name, base_url=server.base_url, **kw)  # type: ignore[arg-type]


def _requests(count: int, **kw: object) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=[{"role": "user", "content": f"Server problem {i}: 3 + {i}?"}], seed=500 + i, **kw
        )  # type: ignore[arg-type]
        for i in range(count)
    ]


def _metrics(server: VLLMServer) -> list[float]:
    return [server.metric(name) for name in METRICS]


def test_counts_and_tokens_match_the_server(
    tiny_server: VLLMServer, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    before = _metrics(tiny_server)
    funnel = Funnel()
    reqs = _requests(12, n=3, max_tokens=24)
    with ModelPool({"t": _config(tiny_server)}, tmp_path / "c.sqlite", funnel) as pool:
        out = pool.client("t", "s").complete(reqs)
    assert all(c.ok and len(c.texts) == 3 for c in out)
    assert all(set(c.finish_reasons) <= {"stop", "length"} for c in out)
    _, _, generated = (a - b for a, b in zip(_metrics(tiny_server), before, strict=True))
    assert funnel.get("s", "requests") == 12
    assert funnel.get("s", "tokens_out") == generated == sum(c.completion_tokens for c in out)
    prompt_lengths = [
        len(
            tok(
                tok.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False),
                add_special_tokens=False,
            )["input_ids"]
        )
        for r in reqs
    ]
    assert [
        c.prompt_tokens for c in out
    ] == prompt_lengths  # the prompt, once per request (not once per sample)
    assert funnel.get("s", "tokens_in") == sum(prompt_lengths)

    before = _metrics(tiny_server)
    again = Funnel()
    with ModelPool({"t": _config(tiny_server)}, tmp_path / "c.sqlite", again) as pool:
        pool.client("t", "s").complete(_requests(12, n=3, max_tokens=24))
    assert again.get("s", "requests") == 0 and _metrics(tiny_server) == before  # nothing reached the server


def test_wrong_model_name_is_a_clear_error(tiny_server: VLLMServer) -> None:
    cfg = ModelConfig(backend="openai", model="qwen-typo", base_url=tiny_server.base_url)
    with ModelPool({"t": cfg}, None) as pool, pytest.raises(ModelNotFoundError, match="serves \\['tiny'\\]"):
        pool.client("t", "s").complete(_requests(1))


def test_server_killed_mid_stage_then_restarted(tiny_server: VLLMServer, tmp_path: Path) -> None:
    """SIGKILL the server (and its engine) after a few completions and start it again: the stage retries through
    the outage, finishes, and the restarted server never sees a request that was answered before the crash."""
    total, concurrency = 48, 4
    cfg = _config(
        tiny_server, max_concurrency=concurrency, max_retries=14, retry_backoff_s=1, retry_backoff_max_s=8
    )
    base = tiny_server.metric("vllm:request_success_total")
    seen: dict[str, float] = {}

    def crash_and_restart() -> None:
        while tiny_server.metric("vllm:request_success_total") - base < 8:
            time.sleep(0.05)
        seen["before_kill"] = tiny_server.metric("vllm:request_success_total") - base
        tiny_server.kill()
        tiny_server.start()

    bg = threading.Thread(target=crash_and_restart)
    bg.start()
    funnel = Funnel()
    try:
        with ModelPool({"t": cfg}, tmp_path / "c.sqlite", funnel) as pool:
            out = pool.client("t", "s").complete(_requests(total, max_tokens=160))
    finally:
        bg.join()
    assert all(c.ok for c in out) and funnel.get("s", "requests") == total
    after_restart = tiny_server.metric("vllm:request_success_total")  # a fresh process counts from zero
    assert seen["before_kill"] >= 8
    # answered-before-crash requests are not re-sent (up to the few whose answers were lost in flight)
    assert after_restart <= total - seen["before_kill"] + concurrency

    again = Funnel()
    with ModelPool({"t": cfg}, tmp_path / "c.sqlite", again) as pool:
        pool.client("t", "s").complete(_requests(total, max_tokens=160))
    assert (
        again.get("s", "requests") == 0 and tiny_server.metric("vllm:request_success_total") == after_restart
    )
