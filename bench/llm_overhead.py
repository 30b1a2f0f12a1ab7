"""Overhead of mathaug's model layer against the raw APIs it wraps, measured in one run on the same prompts.

1. `vllm` backend (ModelPool client, request cache on and cold) vs a raw ``LLM.chat`` call, same engine.
2. `openai` backend (ModelPool client, cache on and cold) vs a raw ``AsyncOpenAI`` loop with a semaphore at the
   same concurrency, same vLLM OpenAI-compatible server.

Both on the tiny random model (tests/fixtures/tiny_model.py), every output ``max_tokens`` long. Runs alternate
(raw, ours, raw, ours ...); the figures are each side's median throughput (completion tokens/s), their ratio, the
median of the per-round ratios (robust to load drifting on a shared machine), and the client process's CPU time.
Target: ratio >= 0.9x.

    .venv/bin/python bench/llm_overhead.py [--prompts 512] [--max-tokens 64] [--concurrency 32] [--rounds 9] [--only vllm]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prompts(count: int) -> list[str]:
    """GSM8K questions when the shared data is present, else generated word problems."""
    gsm8k = Path("/work/shared/data/gsm8k/test.jsonl")
    if gsm8k.is_file():
        with gsm8k.open() as fh:
            questions = [json.loads(line)["question"] for _, line in zip(range(count), fh, strict=False)]
        if len(questions) == count:
            return questions
    return [
        f"A farmer has {i + 3} cows and buys {2 * i + 1} more each week for {i % 7 + 2} weeks. How many?"
        for i in range(count)
    ]


def bench_vllm(model_dir: Path, questions: list[str], max_tokens: int, rounds: int) -> dict[str, float]:
    from vllm import SamplingParams

    from pipeline.funnel import Funnel
    from pipeline.llm import ChatRequest, ModelConfig, ModelPool
    from pipeline.llm.vllm_backend import get_engine, shutdown_engines

    config = ModelConfig(backend="vllm", model=str(model_dir), enforce_eager=True, max_model_len=2048)
    llm = get_engine(config)  # the same engine for both sides
    convs = [[{"role": "user", "content": q}] for q in questions]

    def raw() -> int:
        params = [
            SamplingParams(max_tokens=max_tokens, temperature=0.7, seed=1000 + i) for i in range(len(convs))
        ]
        outs = llm.chat(convs, params, use_tqdm=False)
        return sum(len(c.token_ids) for o in outs for c in o.outputs)

    def ours(tmp: Path, r: int) -> int:
        requests = [
            ChatRequest(messages=c, max_tokens=max_tokens, temperature=0.7, seed=1000 + i)
            for i, c in enumerate(convs)
        ]
        funnel = Funnel()
        with ModelPool({"m": config}, tmp / f"cache-{r}.sqlite", funnel) as pool:
            out = pool.client("m", "bench").complete(requests)
        assert funnel.get("bench", "requests") == len(requests)
        return sum(c.completion_tokens for c in out)

    with tempfile.TemporaryDirectory() as tmp:
        raw(), ours(Path(tmp), -1)  # warm-up
        result = _alternate(raw, lambda r: ours(Path(tmp), r), rounds, reset=llm.reset_prefix_cache)
    shutdown_engines()
    return result


def bench_openai(
    model_dir: Path, questions: list[str], max_tokens: int, rounds: int, concurrency: int
) -> dict[str, float]:
    import openai

    from pipeline.funnel import Funnel
    from pipeline.llm import ChatRequest, ModelConfig, ModelPool
    from tests.fixtures.vllm_server import VLLMServer

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = VLLMServer(model_dir, tmp / "server.log").start()
        try:
            msgs = [[{"role": "user", "content": q}] for q in questions]

            async def raw_loop() -> int:
                client = openai.AsyncOpenAI(
                    base_url=server.base_url, api_key="EMPTY", max_retries=0, timeout=600
                )
                sem = asyncio.Semaphore(concurrency)

                async def one(i: int) -> int:
                    async with sem:
                        resp = await client.chat.completions.create(
                            model=server.served_name, messages=msgs[i], max_tokens=max_tokens, temperature=0.7,
                            seed=1000 + i,
                        )  # fmt: skip
                        return resp.usage.completion_tokens

                try:
                    return sum(await asyncio.gather(*(one(i) for i in range(len(msgs)))))
                finally:
                    await client.close()

            config = ModelConfig(
                backend="openai",
                model=server.served_name,
                base_url=server.base_url,
                max_concurrency=concurrency,
                request_timeout_s=600,
            )

            def ours(r: int) -> int:
                requests = [
                    ChatRequest(messages=m, max_tokens=max_tokens, temperature=0.7, seed=1000 + i)
                    for i, m in enumerate(msgs)
                ]
                funnel = Funnel()
                with ModelPool({"m": config}, tmp / f"cache-{r}.sqlite", funnel) as pool:
                    out = pool.client("m", "bench").complete(requests)
                assert funnel.get("bench", "requests") == len(requests)
                return sum(c.completion_tokens for c in out)

            asyncio.run(raw_loop()), ours(-1)  # warm-up
            return _alternate(lambda: asyncio.run(raw_loop()), ours, rounds)
        finally:
            server.stop()


def _alternate(raw, ours, rounds: int, reset=None) -> dict[str, float]:  # noqa: ANN001 - small local helper
    """Alternate raw and ours; wall-clock throughput, plus this process's CPU seconds (the client side's cost,
    which on a small machine competes with the engine or server for cores, and is not disturbed by other load)."""
    tps: dict[str, list[float]] = {"raw": [], "ours": []}
    cpu: dict[str, list[float]] = {"raw": [], "ours": []}
    for r in range(rounds):
        for side, fn in (("raw", raw), ("ours", lambda r=r: ours(r))):
            if reset is not None:
                reset()
            started, cpu_started = time.perf_counter(), time.process_time()
            tokens = fn()
            seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
            tps[side].append(tokens / seconds)
            cpu[side].append(cpu_seconds)
            print(
                f"  round {r} {side:4s}: {tokens} tokens in {seconds:.2f}s = {tokens / seconds:,.0f} tok/s "
                f"(client CPU {cpu_seconds:.2f}s)",
                flush=True,
            )
    raw_med, our_med = statistics.median(tps["raw"]), statistics.median(tps["ours"])
    return {
        "raw_tok_s": raw_med,
        "ours_tok_s": our_med,
        "ratio": our_med / raw_med,
        "paired_ratio": statistics.median(o / r for o, r in zip(tps["ours"], tps["raw"], strict=True)),
        "raw_cpu_s": statistics.median(cpu["raw"]),
        "ours_cpu_s": statistics.median(cpu["ours"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--only", choices=["vllm", "openai"], default=None)
    args = parser.parse_args()

    from tests.fixtures.tiny_model import build_tiny_model
    from tests.fixtures.vllm_server import vllm_cpu_env

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(vllm_cpu_env(Path(tmp) / "vllm_cache"))
        model_dir = build_tiny_model(Path(tmp) / "tiny")
        questions = prompts(args.prompts)
        results = {}
        if args.only in (None, "vllm"):
            print(
                f"vllm backend vs raw LLM.chat: {args.prompts} prompts x {args.max_tokens} tokens", flush=True
            )
            results["vllm"] = bench_vllm(model_dir, questions, args.max_tokens, args.rounds)
        if args.only in (None, "openai"):
            print(f"openai backend vs raw AsyncOpenAI loop, concurrency {args.concurrency}", flush=True)
            results["openai"] = bench_openai(
                model_dir, questions, args.max_tokens, args.rounds, args.concurrency
            )
    print()
    print(
        "| path | raw tok/s | mathaug tok/s | ratio of medians | median per-round ratio "
        "| client CPU s, raw / ours |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    names = {
        "vllm": "`vllm` backend vs `LLM.chat`",
        "openai": f"`openai` backend vs AsyncOpenAI loop (c={args.concurrency})",
    }
    for key, res in results.items():
        print(
            f"| {names[key]} | {res['raw_tok_s']:,.0f} | {res['ours_tok_s']:,.0f} | {res['ratio']:.2f}x "
            f"| {res['paired_ratio']:.2f}x | {res['raw_cpu_s']:.2f} / {res['ours_cpu_s']:.2f} |"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
