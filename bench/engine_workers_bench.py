"""Two engine workers vs one engine, same prompts, one run: completion tokens/s and the router's cost.

1. one engine: ``VLLMBackend`` in this process (what ``data_parallel_size: 1`` gets);
2. two engine workers: ``WorkerPoolBackend`` with ``data_parallel_size: 2`` (two processes, cores split).

Tiny random model (tests/fixtures/tiny_model.py) without the early-stop boost, so every output is ``max_tokens``
long. Rounds alternate (one, two, one, two ...); the figures are each side's median tokens/s, their ratio, the
median of per-round ratios (robust to load drifting on a shared machine), and the routing overhead: this
process's CPU time per request while the workers run (routing, pickling, socket I/O, result hand-off; the
engines run in other processes), plus the time spent in the router's send path per request.
On N cores the ratio is at most about 2x (each engine gets half the cores); on N GPUs it approaches N.

    .venv/bin/python bench/engine_workers_bench.py [--prompts 64] [--max-tokens 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def requests(count: int, max_tokens: int) -> list:
    from pipeline.llm import ChatRequest

    return [
        ChatRequest(messages=[{"role": "user", "content": f"A farmer has {i + 3} cows and buys {2 * i + 1} more "
                               f"each week for {i % 7 + 2} weeks. How many cows?"}],
                    max_tokens=max_tokens, temperature=0.7, seed=1_000_003 * (i + 1) % 2**31)
        for i in range(count)
    ]


def timed(backend: object, batch: list) -> tuple[float, int, float]:
    """(seconds, completion tokens, this process's CPU seconds) for one batch."""
    tokens = 0

    def done(i: int, completion: object) -> None:
        nonlocal tokens
        tokens += completion.completion_tokens  # type: ignore[attr-defined]

    cpu, start = time.process_time(), time.perf_counter()
    backend.generate(batch, done)  # type: ignore[attr-defined]
    return time.perf_counter() - start, tokens, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from tests.fixtures.tiny_model import build_tiny_model
    from tests.fixtures.vllm_server import vllm_cpu_env

    work = Path(tempfile.mkdtemp(prefix="engine_workers_bench_"))
    model = build_tiny_model(work / "model")  # no eos boost: every answer is max_tokens long
    os.environ.update(vllm_cpu_env(work / "vllm_cache"))
    from pipeline.llm import ModelConfig
    from pipeline.llm.vllm_backend import VLLMBackend, shutdown_engines
    from pipeline.llm.workers import WorkerPoolBackend

    config = ModelConfig(backend="vllm", model=str(model), enforce_eager=True, max_model_len=1024)
    started = time.perf_counter()
    one = VLLMBackend(config)
    one_start = time.perf_counter() - started
    started = time.perf_counter()
    two = WorkerPoolBackend(config.model_copy(update={"data_parallel_size": 2}))
    two_start = time.perf_counter() - started
    batch = requests(args.prompts, args.max_tokens)
    timed(one, batch[:4]), timed(two, batch[:8])  # warm both
    rates: dict[str, list[float]] = {"one": [], "two": []}
    cpu_per_request: list[float] = []
    routing_before = two.routing_seconds
    for _ in range(args.rounds):
        seconds, tokens, _ = timed(one, batch)
        rates["one"].append(tokens / seconds)
        seconds, tokens, cpu = timed(two, batch)
        rates["two"].append(tokens / seconds)
        cpu_per_request.append(cpu / len(batch))
    routing_ms = 1000 * (two.routing_seconds - routing_before) / (args.rounds * len(batch))
    served = list(two.served)
    two.close()
    shutdown_engines()
    result = {
        "prompts": args.prompts, "max_tokens": args.max_tokens, "rounds": args.rounds,
        "cores": len(os.sched_getaffinity(0)), "load_avg_1m": round(os.getloadavg()[0], 1),
        "start_s": {"one": round(one_start, 1), "two_workers": round(two_start, 1)},
        "tokens_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
        "ratio_of_medians": round(statistics.median(rates["two"]) / statistics.median(rates["one"]), 2),
        "median_round_ratio": round(statistics.median(b / a for a, b in zip(rates["one"], rates["two"],
                                                                           strict=True)), 2),
        "router_cpu_ms_per_request": round(1000 * statistics.median(cpu_per_request), 2),
        "router_send_ms_per_request": round(routing_ms, 3),
        "requests_per_worker": served,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
