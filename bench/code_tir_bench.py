"""Issue 18 figure: code_tir's generation throughput against a raw single call of the same prompts and token
counts on the same vLLM engine, in one run.

The stage's own path runs: ``code_tir.generate`` with its ``_Runner`` (turns that do not wait for each other,
``LLMClient.converse``, the real sandbox running code after every turn, the conversation continued in the same
assistant message). The tiny random model writes no code, so the bench's runner treats every turn as ending in a
code block (a small real computation, run in the sandbox) until ``calls`` calls are made (ToRA's limit ends the
trajectory after the last one): each trajectory is ``calls`` turns of ``--turn-tokens`` tokens. The raw side asks
the engine for the same first prompts with ``calls * turn_tokens`` tokens in one request each (``LLM.chat``), with
the stage's own sampling (temperature, top_p, stop string: top-p sampling alone costs this CPU engine ~40% of its
step time, so a baseline without it is not the same generation). Runs alternate; the figure is the median ratio of
completion tokens/s, sandbox latency included. Target: >= 0.8x.

``--turn-tokens`` takes several values (a sweep in one run, one engine). After the rounds, the bench also measures
what the sandbox itself costs while the engine works: the latency of one sandbox call (the snippet above) with
the engine idle, beside two CPU-bound processes, and while the engine generates a batch of ``--trajectories``
sequences in another thread (the situation of every code_tir call on a CPU engine), with the sandbox's ``cpus``
at ``all`` (any core) and at ``auto`` (away from the cores the engine pinned; the default).

    .venv/bin/python bench/code_tir_bench.py [--trajectories 64] [--calls 4] [--turn-tokens 32 128] [--rounds 3]
        [--sandbox-workers N] [--sandbox-cpus auto|all|1,2] [--latency-only]
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

SNIPPET = "from sympy import Rational\nprint(sum(Rational(1, k) for k in range(1, 30)))\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trajectories", type=int, default=64)
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--turn-tokens", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency-only", action="store_true", help="only the sandbox latency figures (no rounds)")
    ap.add_argument("--sandbox-workers", type=int, default=code_tir_default_workers(),
                    help="sandbox worker processes (default: the stage's own default)")
    ap.add_argument("--sandbox-cpus", default="auto",
                    help="the sandbox's `cpus` setting: auto (the stage's default), all, or ids like 1,2")
    args = ap.parse_args()
    if args.sandbox_cpus not in ("auto", "all"):
        args.sandbox_cpus = [int(c) for c in args.sandbox_cpus.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="mathaug-tir-bench-"))
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_CACHE_ROOT", str(tmp / "vllm"))
    from tests.fixtures.tiny_model import build_tiny_model

    model_dir = build_tiny_model(tmp / "model")  # no EOS boost: every turn runs to its max_tokens

    from vllm import SamplingParams

    from pipeline.funnel import Funnel
    from pipeline.llm import ModelConfig, ModelPool
    from pipeline.llm.vllm_backend import get_engine
    from pipeline.records import make_record
    from pipeline.stages import StageContext, code_tir

    config = ModelConfig(backend="vllm", model=str(model_dir), enforce_eager=True, max_model_len=2048)
    llm = get_engine(config)
    questions = [f"A farmer has {i + 3} cows and buys {2 * i + 1} more each week for {i % 7 + 2} weeks. "
                 "How many cows?" for i in range(args.trajectories)]

    class AlwaysCode(code_tir._Runner):
        """Every turn ends in a code block until `calls` are made (the random model writes none)."""

        def code_in(self, turn: str, finish: str) -> str | None:
            return SNIPPET

    def stage_params(turn_tokens: int) -> code_tir.Params:
        return code_tir.Params(max_calls=args.calls, max_tokens=turn_tokens, temperature=1.0,
                               sandbox={"timeout_s": 5, "workers": args.sandbox_workers, "cpus": args.sandbox_cpus},
                               parallel=8, require_code=False)

    def stage_run(round_no: int, turn_tokens: int) -> tuple[float, int, float]:
        params = stage_params(turn_tokens)
        funnel = Funnel()
        with ModelPool({"teacher": config}) as pool:  # no cache: every turn is generated
            ctx = StageContext(stage="code_tir", seed=round_no, funnel=funnel,
                               model=lambda n: pool.client(n, "code_tir", funnel))
            trajs = [code_tir.Trajectory(parent=make_record(question=q, solution=None, answer="1", method="seed"),
                                         slot=f"q{i}", seed=1000 * round_no + i, gold="1")
                     for i, q in enumerate(questions)]
            started = time.perf_counter()
            code_tir.generate(trajs, params, ctx, runner=AlwaysCode)
            seconds = time.perf_counter() - started
        calls = sum(t.calls for t in trajs)
        return funnel.get("code_tir", "tokens_out") / seconds, calls, seconds

    def raw_run(round_no: int, turn_tokens: int) -> tuple[float, float]:
        from pipeline.llm.templates import load_template

        stage = stage_params(turn_tokens)
        tmpl = load_template(stage.templates.tora)
        convs = [tmpl.render(question=q) for q in questions]
        # the stage's own sampling (temperature, top_p, its stop string), one request of every turn's tokens
        params = [SamplingParams(n=1, temperature=stage.temperature, top_p=stage.top_p, stop=["```output"],
                                 max_tokens=args.calls * turn_tokens, seed=1000 * round_no + i)
                  for i in range(len(questions))]
        started = time.perf_counter()
        outs = llm.chat(convs, params, use_tqdm=False)
        seconds = time.perf_counter() - started
        return sum(len(o.outputs[0].token_ids) for o in outs) / seconds, seconds

    if not args.latency_only:
        stage_run(0, args.turn_tokens[0])  # warm the engine and the sandbox's imports
    sweep = []
    for turn_tokens in [] if args.latency_only else args.turn_tokens:
        ratios, stage_tps, raw_tps, calls = [], [], [], 0
        for r in range(1, args.rounds + 1):
            raw, _ = raw_run(r, turn_tokens)
            ours, calls, _ = stage_run(r, turn_tokens)
            raw_tps.append(raw)
            stage_tps.append(ours)
            ratios.append(ours / raw)
            print(f"turn {turn_tokens} tokens, round {r}: raw {raw:,.0f} tok/s, code_tir {ours:,.0f} tok/s "
                  f"({calls} sandbox calls), ratio {ours / raw:.2f}", file=sys.stderr)
        sweep.append({
            "turn_tokens": turn_tokens, "raw_tokens_per_s": round(statistics.median(raw_tps)),
            "code_tir_tokens_per_s": round(statistics.median(stage_tps)),
            "ratio_median": round(statistics.median(ratios), 3), "ratios": [round(x, 3) for x in ratios],
            "sandbox_calls_per_run": calls,
        })
    print(json.dumps({
        "trajectories": args.trajectories, "calls_per_trajectory": args.calls, "sandbox_workers": args.sandbox_workers,
        "sweep": sweep,
        "sandbox_call_latency_ms": sandbox_latency(llm, args.trajectories),
    }, indent=2))


def code_tir_default_workers() -> int:
    from pipeline.stages.code_tir import Params

    return Params().sandbox.workers


def sandbox_latency(llm: object, batch: int, calls: int = 60) -> dict[str, dict[str, float]]:
    """One sandbox call at a time (p50 / p90 / max, ms): engine idle; two plain CPU-bound processes running (the
    same CPU demand without the engine: is it CPU share?); the engine generating ``batch`` sequences."""
    import subprocess
    import threading

    from vllm import SamplingParams

    from pipeline.sandbox import Sandbox, SandboxConfig

    def measure(sandbox: Sandbox) -> dict[str, float]:
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            sandbox.run(SNIPPET)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        return {"p50": round(times[calls // 2], 1), "p90": round(times[9 * calls // 10], 1), "max": round(times[-1], 1)}

    stop = threading.Event()

    def generate() -> None:
        prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(batch)]
        while not stop.is_set():
            llm.chat(prompts, SamplingParams(max_tokens=256, ignore_eos=True), use_tqdm=False)

    out: dict[str, dict[str, float]] = {}
    for cpus in ("all", "auto"):  # any core, or away from the cores the engine pinned (the stage's default)
        with Sandbox(SandboxConfig(workers=2, cpus=cpus)) as sandbox:
            sandbox.run("print(1)")
            out[f"cpus_{cpus}/engine_idle"] = measure(sandbox)
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
            try:
                time.sleep(1)
                out[f"cpus_{cpus}/two_cpu_bound_processes"] = measure(sandbox)
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
            stop.clear()
            busy = threading.Thread(target=generate, daemon=True)
            busy.start()
            time.sleep(2)
            out[f"cpus_{cpus}/engine_generating_{batch}_sequences"] = measure(sandbox)
            stop.set()
            busy.join()
    return out


if __name__ == "__main__":
    main()
