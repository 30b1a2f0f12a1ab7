"""``mathaug report`` bench: wall time and peak RSS of the report of a synthetic 1,000,000-row build.

    python bench/report_bench.py [--rows 1000000] [--rows 100000 ...] [--out /tmp/report-bench] [--keep]

For each size, ``synthesize_build`` writes an output directory with the real writers (``make_record`` →
``ShardWriter`` → Parquet shards + manifest with a funnel, ``DroppedWriter`` → dropped/): GSM8K-like seed,
symbolic and entity-swap rows, and persona rows with majority votes, MATH levels, model tokens, LaTeX answers of
every type and a ``round`` key in ``method_params``. Then ``python -m pipeline.cli report OUT`` runs in a child
process, timed, its peak RSS read from ``getrusage(RUSAGE_CHILDREN)`` (the parent only synthesises). Two sizes
show whether memory grows with rows. Prints a Markdown table for bench/RESULTS.md.

``synthesize_build`` is also the persona-like build that tests/test_report.py renders in Chromium.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.funnel import Funnel  # noqa: E402
from pipeline.io.dropped import DroppedWriter  # noqa: E402
from pipeline.io.shards import ShardWriter  # noqa: E402
from pipeline.records import make_record  # noqa: E402

NAMES = ["Natalia", "Weng", "Betty", "Julie", "James", "Amara", "Kenji", "Priya", "Tomás", "Olu"]
ITEMS = ["clips", "apples", "pencils", "stickers", "marbles", "books", "cookies", "tickets"]
PERSONAS = [
    "A retired marine biologist who volunteers at the local aquarium",
    "A high-school chemistry teacher preparing a lab budget",
    "A freight dispatcher planning truck routes across the Midwest",
    "A pastry chef scaling recipes for a wedding",
    "A community-garden organiser splitting plots among families",
]
# (answer, question template, solution step) per answer type: the persona stage's mix of MATH-style answers
PERSONA_ANSWERS = [
    ("{a}", "How many {item} does {name} have left after giving away {b}?", "{name} has ${a} + {b}$ and gives $ {b}$."),
    ("\\frac{{{a}}}{{{c}}}", "What fraction of the {item} are red if {a} of {c} are red?", "The share is $\\frac{{{a}}}{{{c}}}$."),
    ("{a}.{b}", "What is the average weight in kg of the {item}?", "The mean is ${a}.{b}$ kg."),
    ("{a}x + {b}", "Write the cost of $x$ {item} as an expression.", "Each costs ${a}$, plus ${b}$: $ {a}x + {b}$."),
    ("[{b}, \\infty)", "For which $x$ is $x - {b} \\ge 0$?", "Solving gives $x \\ge {b}$."),
    ("({a}, {b})", "At which point do the two paths of the {item} cross?", "Substituting gives $({a}, {b})$."),
]


def _seed_row(rng: random.Random, i: int, run_id: str) -> dict[str, Any]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 90), rng.randint(2, 90)
    steps = "\n".join(f"{name} then counts {k} more {item}: {a}+{k} = <<{a}+{k}={a + k}>>{a + k}."
                      for k in range(rng.randint(1, 9)))
    return make_record(
        question=f"{name} sold {item} to {a} of her friends in April, and then {b} more in May. "
        f"How many {item} did {name} sell altogether in April and May? (#{i})",
        solution=f"{name} sold {a}+{b} = <<{a}+{b}={a + b}>>{a + b} {item}.\n{steps}\n#### {a + b}",
        answer=str(a + b),
        method="seed",
        source={"dataset": "gsm8k", "split": "train", "seed_id": f"gsm8k_train:{i}"},
        verification={"status": "gold", "method": "gold"},
        run_id=run_id,
    )


def _derived_row(rng: random.Random, i: int, method: str, run_id: str) -> dict[str, Any]:
    row = _seed_row(rng, i, run_id)
    verification = {"status": "verified", "method": "recompute" if method == "symbolic" else "inherited"}
    return make_record(question=row["question"], solution=row["solution"], answer=row["answer"], method=method,
                       source=row["source"], parent_ids=[row["id"]], verification=verification,
                       method_params={"variant": i % 3, "version": "1"}, run_id=run_id)


def _persona_row(rng: random.Random, i: int, run_id: str, rounds: int) -> dict[str, Any]:
    answer, question, step = rng.choice(PERSONA_ANSWERS)
    fill = {"a": rng.randint(2, 99), "b": rng.randint(1, 9), "c": rng.randint(100, 200), "name": rng.choice(NAMES),
            "item": rng.choice(ITEMS)}
    samples = 4
    votes = rng.choice([2, 3, 3, 4, 4, 4])
    persona = rng.choice(PERSONAS)
    solution = "\n".join([step.format(**fill)] * rng.randint(1, 12)) + f"\nThe answer is $\\boxed{{{answer.format(**fill)}}}$."
    return make_record(
        question=f"{persona} asks: {question.format(**fill)} (#{i})",
        solution=solution,
        answer=answer.format(**fill),
        method="persona",
        source={"dataset": "math", "split": "train", "seed_id": f"math_train:{i}", "subject": "Algebra"},
        persona=persona,
        difficulty=f"Level {rng.randint(1, 5)}",
        method_params={"mode": "rewrite", "samples": samples, "round": 1 + i % rounds, "version": "1"},
        verification={"status": "verified", "method": "majority", "votes": votes, "samples": samples,
                      "detail": f"majority answer ({votes}/{samples}) matches gold"},
        generator={"model": "Qwen/Qwen2.5-Math-7B-Instruct", "template": "persona/rewrite", "tokens_in": 420,
                   "tokens_out": 180 * samples},
        run_id=run_id,
    )


MIX = (("seed", 0.10), ("symbolic", 0.25), ("entity_swap", 0.05), ("persona", 0.60))


def synthesize_build(out_dir: Path, rows: int, *, seed: int = 0, rows_per_shard: int = 50_000, rounds: int = 3,
                     duplicate_share: float = 0.1) -> dict[str, Any]:
    """Write a mathaug output directory of ``rows`` kept rows (real schema and writers); returns the manifest."""
    rng = random.Random(seed)
    run_id = f"bench-{seed}"
    funnel = Funnel()
    with ShardWriter(out_dir, rows_per_shard=rows_per_shard, run_id=run_id) as writer:
        # the dropped table goes into the same generation as the shards, where the writer has one (pipeline.io.publish)
        same_generation = {"generation": writer.generation} if hasattr(writer, "generation") else {}
        dropped = DroppedWriter(out_dir, rows_per_file=rows_per_shard, **same_generation)
        made = 0
        for method, share in MIX:
            n = max(1, int(rows * share)) if method != "persona" else rows - made
            made += n
            for i in range(n):
                if method == "seed":
                    rec = _seed_row(rng, i, run_id)
                elif method == "persona":
                    rec = _persona_row(rng, i, run_id, rounds)
                else:
                    rec = _derived_row(rng, i, method, run_id)
                folded = 1 if rng.random() < duplicate_share else 0
                if folded:  # its near-duplicate goes to dropped/ and the keeper counts it
                    dropped.add(rec, "near_dedup", "a near-duplicate question", duplicate_of=rec["id"])
                    funnel.add(method, "duplicates")
                rec["dedup"] = {"cluster_id": rec["id"], "dropped": folded + (rng.random() < 0.001) * 30}
                writer.write([rec])
            funnel.add(method, "generated", n + funnel.get(method, "duplicates"))
            funnel.add(method, "verified", n + funnel.get(method, "duplicates"))
            funnel.add(method, "kept", n)
            funnel.add(method, "seconds", n * (0.02 if method == "persona" else 0.0002))
            if method == "persona":
                funnel.reject(method, "no_majority", n // 5)
                funnel.add(method, "tokens_in", 420 * n)
                funnel.add(method, "tokens_out", 720 * n)
        summary = dropped.close()
        return writer.close(recipe_name=f"synthetic persona build ({rows:,} rows)", recipe_hash="bench", methods=[m for m, _ in MIX],
                            funnel=funnel.to_dict(), dropped=summary, seconds=0)


def measure(out_dir: Path) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS MiB, output) of ``mathaug report OUT`` in a child process.

    CPU seconds (user + system) are reported beside wall time because the bench machine is shared: under load
    the wall time measures the neighbours as much as the report."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "report", str(out_dir)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"mathaug report {out_dir} failed ({proc.returncode}):\n{proc.stderr}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    peak_mib = after.ru_maxrss / 1024  # kB on Linux
    return wall, cpu, peak_mib, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="build sizes (repeatable; default 1M)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/report-bench"))
    parser.add_argument("--keep", action="store_true", help="keep the synthetic output directories")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept synthetic directory of the same size")
    args = parser.parse_args()
    results = []
    for rows in args.rows or [1_000_000]:  # smallest first: RUSAGE_CHILDREN is a running maximum
        out_dir = args.out / f"rows-{rows}"
        started = time.perf_counter()
        if args.reuse and (out_dir / "manifest.json").exists():
            manifest = json.loads((out_dir / "manifest.json").read_text())
        else:
            shutil.rmtree(out_dir, ignore_errors=True)
            manifest = synthesize_build(out_dir, rows)
        synth_s = time.perf_counter() - started
        size_mb = sum(s["bytes"] for s in manifest["shards"]) / 1e6
        wall, cpu, peak, stdout = measure(out_dir)
        page_mb = (out_dir / "report" / "index.html").stat().st_size / 1e6
        print(stdout, file=sys.stderr)
        results.append((rows, len(manifest["shards"]), size_mb, synth_s, wall, cpu, peak, page_mb))
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    print("| rows | shards | Parquet MB | synthesis s | `mathaug report` wall s | CPU s | peak RSS MiB | index.html MB |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|")
    for rows, shards, size_mb, synth_s, wall, cpu, peak, page_mb in results:
        print(f"| {rows:,} | {shards} | {size_mb:,.0f} | {synth_s:,.0f} | {wall:.1f} | {cpu:.1f} | {peak:,.0f} "
              f"| {page_mb:.2f} |")


if __name__ == "__main__":
    main()
