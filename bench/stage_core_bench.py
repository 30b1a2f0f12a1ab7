"""Issue 12 figure: a large LLM-free build through the stage core — two chained stages and solution-level
dedup — with its wall time and peak RSS.

Seeds are synthetic GSM8K-style problems (distinct questions, calculator annotations); stage ``restate`` writes a
new question per input, stage ``second_solution`` (output ``solutions``) adds a second solution to every question
of the seeds and of ``restate``. Everything then goes through verify, exact dedup keeping up to
``max_solutions_per_question`` solutions per question, near dedup, decontamination and the shard writer: the
rows the build handles are seeds + restated + added solutions.

    python bench/stage_core_bench.py --seeds 250000        # 1,000,000 rows through the build
    python bench/stage_core_bench.py --seeds 2000 --quick  # a smoke run

The two stages are bench-only (registered here, not shipped): cheap on purpose, so the figure measures the core
(planning, streaming between stages, dedup, writing), not a method.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import stages as stage_registry  # noqa: E402
from pipeline.records import derive  # noqa: E402

NAMES = ["Tom", "Ana", "Li", "Omar", "Sara", "Ken", "Maya", "Ivan", "Zoe", "Raj"]
ITEMS = ["apples", "pens", "cards", "stamps", "books", "shells", "coins", "marbles"]


class _NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Restate:
    """A new question per input (the same problem told as a shop receipt)."""

    NAME = "restate"
    VERSION = "1"
    Params = _NoParams

    @staticmethod
    def run(records: list[dict[str, Any]], params: Any, ctx: Any) -> list[dict[str, Any]]:
        return [
            derive(r, question="At the shop counter: " + r["question"], solution=r["solution"], answer=r["answer"],
                   method="restate", verification={"status": "verified", "method": "recompute"})
            for r in records
        ]


class SecondSolution:
    """A second, differently worded solution for the same question."""

    NAME = "second_solution"
    VERSION = "1"
    OUTPUT = "solutions"
    Params = _NoParams

    @staticmethod
    def run(records: list[dict[str, Any]], params: Any, ctx: Any) -> list[dict[str, Any]]:
        return [
            derive(r, question=r["question"], solution=f"Put together, the total is {r['answer']}. The answer is "
                   f"{r['answer']}.", answer=r["answer"], method="second_solution",
                   verification={"status": "verified", "method": "recompute"})
            for r in records
        ]


def register() -> None:
    module = sys.modules[__name__]
    module.restate = Restate  # type: ignore[attr-defined]
    module.second_solution = SecondSolution  # type: ignore[attr-defined]
    stage_registry.REGISTRY["restate"] = f"{__name__}"
    stage_registry.REGISTRY["second_solution"] = f"{__name__}"
    stage_registry.get_stage.cache_clear()
    original = stage_registry.get_stage.__wrapped__

    def get(method: str) -> Any:
        if method == "restate":
            return stage_registry.StageDef.of(Restate, method)
        if method == "second_solution":
            return stage_registry.StageDef.of(SecondSolution, method)
        return original(method)

    stage_registry.get_stage = get  # type: ignore[assignment]
    import pipeline.batches
    import pipeline.build
    import pipeline.recipe

    for mod in (pipeline.batches, pipeline.build, pipeline.recipe):
        mod.get_stage = get  # type: ignore[attr-defined]


def write_seeds(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w") as fh:
        for i in range(n):
            name, item = rng.choice(NAMES), rng.choice(ITEMS)
            a, b, c = rng.randint(2, 999), rng.randint(2, 999), rng.randint(2, 99)
            total = a + b * c
            question = (f"{name} has {a} {item} and buys {b} boxes of {c} {item} each (order {i}). "
                        f"How many {item} does {name} have now?")
            solution = (f"The boxes hold {b} * {c} = <<{b}*{c}={b * c}>>{b * c} {item}.\n"
                        f"So {name} has {a} + {b * c} = <<{a}+{b * c}={total}>>{total} {item}.\n#### {total}")
            fh.write(json.dumps({"question": question, "answer": solution}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=250_000)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="no decontamination (smoke run)")
    args = ap.parse_args()
    register()
    from pipeline.build import run_build
    from pipeline.recipe import parse_recipe

    with tempfile.TemporaryDirectory(prefix="mathaug-core-bench-") as tmp:
        seeds = Path(tmp) / "seeds.jsonl"
        write_seeds(seeds, args.seeds)
        recipe = parse_recipe(json.dumps({
            "name": "core-bench",
            "seeds": [{"format": "gsm8k", "path": str(seeds)}],
            "stages": [
                {"method": "restate", "from": ["seeds"]},
                {"method": "second_solution", "from": ["seeds", "restate"]},
            ],
            "batch_size": args.batch_size,
            "dedup": {"exact": True, "max_solutions_per_question": 4, "near": {"threshold": 0.8}},
            "decontaminate": {"enabled": not args.quick},
            "output": {"rows_per_shard": 100_000},
        }))
        started = time.perf_counter()
        result = run_build(recipe, Path(tmp) / "out")
        wall = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        handled = sum(result.funnel.get(s, "verified") + result.funnel.get(s, "failed") for s in result.funnel.stages())
        print(json.dumps({
            "seeds": args.seeds, "rows_through_build": int(handled), "rows_kept": result.rows,
            "kept_by_method": {s: result.funnel.get(s, "kept") for s in result.funnel.stages()},
            "wall_s": round(wall, 1), "rows_per_s": round(handled / wall), "peak_rss_mb": round(peak_mb),
        }, indent=2))


if __name__ == "__main__":
    main()
