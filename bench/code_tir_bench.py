"""Issue 18 figure: code_tir's generation throughput against a raw single call of the same prompts and token
counts on the same vLLM engine, in one run.

The stage's own path runs: ``code_tir.generate`` with its ``_Runner`` (turns that do not wait for each other,
``LLMClient.converse``, the real sandbox running code after every turn, the conversation continued in the same
assistant message). The tiny random model writes no code, so the bench's runner treats every turn as ending in a
code block (a small real computation, run in the sandbox) until ``calls`` calls are made (ToRA's limit ends the
trajectory after the last one): each trajectory is ``calls`` turns of ``--turn-tokens`` tokens. The raw side asks
the engine for the same first prompts with ``calls * turn_tokens`` tokens in one request each (``LLM.chat``). Runs alternate; the figure is the median
ratio of completion tokens/s, sandbox latency included. Target: >= 0.8x.

    .venv/bin/python bench/code_tir_bench.py [--trajectories 64] [--calls 4] [--turn-tokens 32] [--rounds 3]
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
    ap.add_argument("--turn-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

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
    total_tokens = args.calls * args.turn_tokens

    class AlwaysCode(code_tir._Runner):
        """Every turn ends in a code block until `calls` are made (the random model writes none)."""

        def code_in(self, turn: str, finish: str) -> str | None:
            return SNIPPET

    def stage_run(round_no: int) -> tuple[float, int, float]:
        params = code_tir.Params(max_calls=args.calls, max_tokens=args.turn_tokens, temperature=1.0,
                                 sandbox={"timeout_s": 5, "workers": 2}, parallel=8, require_code=False)
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

    def raw_run(round_no: int) -> tuple[float, float]:
        template = code_tir.Params().templates.tora
        from pipeline.llm.templates import load_template

        tmpl = load_template(template)
        convs = [tmpl.render(question=q) for q in questions]
        params = [SamplingParams(n=1, temperature=1.0, max_tokens=total_tokens, seed=1000 * round_no + i)
                  for i in range(len(questions))]
        started = time.perf_counter()
        outs = llm.chat(convs, params, use_tqdm=False)
        seconds = time.perf_counter() - started
        return sum(len(o.outputs[0].token_ids) for o in outs) / seconds, seconds

    stage_run(0)  # warm the engine and the sandbox's imports
    ratios, stage_tps, raw_tps, calls = [], [], [], 0
    for r in range(1, args.rounds + 1):
        raw, _ = raw_run(r)
        ours, calls, _ = stage_run(r)
        raw_tps.append(raw)
        stage_tps.append(ours)
        ratios.append(ours / raw)
        print(f"round {r}: raw {raw:,.0f} tok/s, code_tir {ours:,.0f} tok/s ({calls} sandbox calls), "
              f"ratio {ours / raw:.2f}", file=sys.stderr)
    print(json.dumps({
        "trajectories": args.trajectories, "calls_per_trajectory": args.calls, "turn_tokens": args.turn_tokens,
        "raw_tokens_per_s": round(statistics.median(raw_tps)), "code_tir_tokens_per_s": round(statistics.median(stage_tps)),
        "ratio_median": round(statistics.median(ratios), 3), "ratios": [round(x, 3) for x in ratios],
        "sandbox_calls_per_run": calls,
    }, indent=2))


if __name__ == "__main__":
    main()
