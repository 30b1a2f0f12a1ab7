"""Semantic decontamination (issue 21): recall on real-model paraphrases, false positives, throughput.

    # 1. once, with the real model running (../shared/tools/real-model.sh start): write the paraphrase set
    python bench/semantic_decontam_bench.py generate --base-url http://127.0.0.1:8011/v1
    # 2. any time after (no model server needed): the figures for bench/RESULTS.md
    python bench/semantic_decontam_bench.py measure [--judge-base-url http://127.0.0.1:8011/v1]

``generate`` asks the model for rephrasings ("keep every number") and persona-style retellings (a persona from
``data/personas``) of GSM8K test and MATH500 items and saves them to ``bench/data/semantic_paraphrases.jsonl``
(item id, mode, persona, paraphrase; not the benchmark text). ``measure`` needs the benchmark and train files of
the shared data folder (``--data``, default ``../shared/data``) and the ``semantic`` extra; it reports

- recall on the paraphrase set: n-gram/MinHash tiers alone, semantic tier alone, both (the shipped step);
- false positives of the semantic tier on GSM8K train and MATH train (both are disjoint from the benchmarks);
- the score margin: how the chosen threshold sits between the paraphrases' and the train rows' scores;
- throughput (rows/s) of the step without a judge, and with the judge on the ambiguous band (``--judge-*``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.dedup.decontam import Decontaminator  # noqa: E402
from pipeline.dedup.semantic import (  # noqa: E402
    DEFAULT_BAND_LOW,
    DEFAULT_THRESHOLD,
    SemanticDecontaminator,
)

PARAPHRASES = ROOT / "bench" / "data" / "semantic_paraphrases.jsonl"
DEFAULT_DATA = ROOT.parent / "shared" / "data"

REPHRASE = (
    "Rewrite the following math problem in your own words. Keep every number and the question exactly the same, "
    "but change the sentence structure and wording. Do not solve it. Reply with the rewritten problem only.\n\n"
    "Problem:\n{question}"
)
PERSONA = (
    "Persona: {persona}\n\nOriginal problem:\n{question}\n\n"
    "Rewrite the problem so that it is set in this person's work or daily life. Keep every number of the original, "
    "written in digits, and keep the question, so that the answer stays the same. Change only the setting, names "
    "and objects. Do not solve the problem. Reply with the rewritten problem only."
)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def benchmark_texts(data: Path) -> dict[str, str]:
    gsm = read_jsonl(data / "gsm8k" / "test.jsonl")
    math = read_jsonl(data / "math" / "test.jsonl")
    out = {f"gsm8k-test:{i}": row["question"] for i, row in enumerate(gsm, start=1)}
    out.update({f"math500:{row['unique_id']}": row["problem"] for row in math})
    return out


def benchmark_files(data: Path) -> dict[str, Path]:
    return {"gsm8k-test": data / "gsm8k" / "test.jsonl", "math500": data / "math" / "test.jsonl"}


# ------------------------------------------------------------------------------------------------ generate


def clean(text: str) -> str:
    text = text.strip().strip('"').strip()
    for label in ("Rewritten problem:", "Rewritten Problem:", "Problem:", "**Rewritten Problem:**"):
        if text.startswith(label):
            text = text[len(label) :].strip()
    return text


def generate(args: argparse.Namespace) -> int:
    texts = benchmark_texts(args.data)
    rng = random.Random(21)
    gsm = sorted((k for k in texts if k.startswith("gsm8k-test:")), key=lambda k: int(k.split(":")[1]))
    # MATH500 items short enough for a 0.5B model to rewrite whole, no figures
    math = sorted(k for k in texts if k.startswith("math500:") and len(texts[k]) < 400 and "[asy]" not in texts[k])
    personas = [row["persona"] for row in read_jsonl(ROOT / "data" / "personas" / "occupations.jsonl")]
    groups = [
        [(k, "rephrase") for k in rng.sample(gsm, args.gsm_rephrase)],
        [(k, "persona") for k in rng.sample(gsm, args.gsm_persona)],
        [(k, "rephrase") for k in rng.sample(math, args.math_rephrase)],
        [(k, "persona") for k in rng.sample(math, args.math_persona)],
    ]
    # interleaved, so that a run cut short (the file is written as it goes) still covers every group
    plan = [g[i] for i in range(max(map(len, groups))) for g in groups if i < len(g)]
    # plain openai client, one request at a time, long timeout: the shared llama.cpp server answers nothing else
    # (not even /v1/models) while it generates, which the pipeline's readiness check reads as "down"
    from openai import OpenAI

    client = OpenAI(base_url=args.base_url, api_key="none", timeout=args.timeout, max_retries=1)
    done = {}
    if PARAPHRASES.exists():  # resume: a cut run keeps what it wrote
        for row in read_jsonl(PARAPHRASES):
            done[(row["item"], row["mode"])] = row
    rows = []
    started = time.perf_counter()
    kept = len(done)
    PARAPHRASES.parent.mkdir(parents=True, exist_ok=True)
    with PARAPHRASES.open("a", encoding="utf-8") as fh:
        for i, (item, mode) in enumerate(plan):
            persona = rng.choice(personas) if mode == "persona" else None
            if (item, mode) in done:
                continue
            prompt = (REPHRASE if mode == "rephrase" else PERSONA).format(question=texts[item], persona=persona)
            reply = client.chat.completions.create(
                model=args.model, messages=[{"role": "user", "content": prompt}], temperature=0.7,
                max_tokens=args.max_tokens, seed=1000 + i,
            )
            choice = reply.choices[0]
            row = {"item": item, "mode": mode, "persona": persona, "paraphrase": clean(choice.message.content or ""),
                   "finish": choice.finish_reason}
            rows.append(row)
            if len(row["paraphrase"]) >= 20 and row["finish"] == "stop":  # empty or truncated: left out
                fh.write(json.dumps({"id": f"para-{kept}", "model": args.model, **row}, ensure_ascii=False) + "\n")
                fh.flush()
                kept += 1
            print(f"{i + 1}/{len(plan)} asked, {kept} kept, {time.perf_counter() - started:.0f}s", file=sys.stderr)
    print(f"{kept} paraphrases in {PARAPHRASES} ({len(rows)} asked in this run)")
    return 0


# ------------------------------------------------------------------------------------------------ measure


def measure(args: argparse.Namespace) -> int:
    if not (args.data / "gsm8k" / "test.jsonl").exists():
        print(f"skipped: {args.data} has no gsm8k/test.jsonl (pass --data)")
        return 0
    paras = read_jsonl(PARAPHRASES)
    gsm_train = [r["question"] for r in read_jsonl(args.data / "gsm8k" / "train.jsonl")]
    math_train = [r["problem"] for r in read_jsonl(args.data / "math" / "train.jsonl.gz")]
    if args.sample:
        rng = random.Random(0)
        gsm_train = rng.sample(gsm_train, min(args.sample, len(gsm_train)))
        math_train = rng.sample(math_train, min(args.sample, len(math_train)))
    ngram = Decontaminator()
    started = time.perf_counter()
    checker = SemanticDecontaminator(
        benchmark_files=benchmark_files(args.data) if args.files else None,
        threshold=args.threshold,
        band_low=args.band_low,
        cache_dir=args.cache_dir,
    )
    load_s = time.perf_counter() - started
    report: dict[str, Any] = {"model": checker.embedder.identity, "threshold": args.threshold, "load_s": load_s}

    para_texts = [p["paraphrase"] for p in paras]
    ngram_hits = ngram.check(para_texts)
    cands = checker.candidates(para_texts)
    sem_hit = [c is not None and c.score >= args.threshold for c in cands]
    right = [c is not None and checker.bench.ids[c.item] == p["item"] for c, p in zip(cands, paras)]
    both = [bool(n) or s for n, s in zip(ngram_hits, sem_hit)]
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(paras):
        groups.setdefault(f"{p['item'].split(':')[0]} {p['mode']}", []).append(i)
    report["recall"] = {
        name: {
            "n": len(idx),
            "ngram_minhash": round(float(np.mean([bool(ngram_hits[i]) for i in idx])), 3),
            "semantic": round(float(np.mean([sem_hit[i] for i in idx])), 3),
            "both": round(float(np.mean([both[i] for i in idx])), 3),
        }
        for name, idx in sorted(groups.items())
    }
    report["recall"]["all"] = {
        "n": len(paras),
        "ngram_minhash": round(float(np.mean([bool(h) for h in ngram_hits])), 3),
        "semantic": round(float(np.mean(sem_hit)), 3),
        "both": round(float(np.mean(both)), 3),
        "top_candidate_is_the_source_item": round(float(np.mean(right)), 3),
    }
    # The rows decontamination meets have passed a stage's question gates; an output that is an answer ("Toulouse
    # has 80 sheep."), a worked solution or an echo of the prompt never becomes a question row. Recall on the
    # outputs that are problems is the figure that matters; recall on every output is reported beside it.
    from pipeline.quality import question_problems

    texts = benchmark_texts(args.data)
    not_a_problem = {"not_a_question", "contains_solution", "meta_text", "too_short"}
    is_problem = [not not_a_problem & set(question_problems(p["paraphrase"], source=texts[p["item"]])) for p in paras]
    problems = [i for i, ok in enumerate(is_problem) if ok]
    report["recall"]["problems_only"] = {
        "n": len(problems),
        "ngram_minhash": round(float(np.mean([bool(ngram_hits[i]) for i in problems])), 3),
        "semantic": round(float(np.mean([sem_hit[i] for i in problems])), 3),
        "both": round(float(np.mean([both[i] for i in problems])), 3),
        "missed_by_ngram_minhash": sum(1 for i in problems if not ngram_hits[i]),
        "of_those_caught_by_semantic": sum(1 for i in problems if not ngram_hits[i] and sem_hit[i]),
    }
    pos_scores = np.array([c.score if c else 0.0 for c in cands])
    report["missed"] = [
        {"id": p["id"], "item": p["item"], "mode": p["mode"], "problem": ok, "score": round(float(c.score), 3) if c else None,
         "cosine": round(float(c.cosine), 3) if c else None, "numbers": f"{c.shared}/{c.item_numbers}" if c else None}
        for p, c, b, ok in zip(paras, cands, both, is_problem) if not b
    ]

    fp: dict[str, Any] = {}
    neg_scores: dict[str, np.ndarray] = {}
    for name, rows in (("gsm8k_train", gsm_train), ("math_train", math_train)):
        t0 = time.perf_counter()
        vectors = train_vectors(name, rows, checker, args.cache_dir)  # embedded once, then cached
        seconds = time.perf_counter() - t0
        cands_neg = checker.candidates(rows, vectors=vectors)
        scores = np.array([c.score if c else 0.0 for c in cands_neg])
        neg_scores[name] = scores
        flagged = scores >= args.threshold
        fp[name] = {
            "rows": len(rows),
            "flagged": int(flagged.sum()),
            "rate": round(float(flagged.mean()), 4),
            "in_band": int(((scores >= args.band_low) & ~flagged).sum()),
            "embed_or_cache_s": round(seconds, 1),
            "examples": [
                {"row": rows[i][:160], "item": checker.bench.ids[cands_neg[i].item], "score": round(float(scores[i]), 3)}
                for i in np.argsort(-scores)[:3]
            ],
        }
    report["false_positives"] = fp
    all_neg = np.concatenate(list(neg_scores.values()))
    report["thresholds"] = {
        f"{t:.2f}": {
            "recall_semantic": round(float((pos_scores >= t).mean()), 3),
            "fp_gsm8k_train": round(float((neg_scores["gsm8k_train"] >= t).mean()), 4),
            "fp_math_train": round(float((neg_scores["math_train"] >= t).mean()), 4),
        }
        for t in np.arange(0.60, 1.01, 0.05)
    }
    report["negatives_in_band"] = int(((all_neg >= args.band_low) & (all_neg < args.threshold)).sum())

    # throughput of the shipped step (n-gram/MinHash + semantic), no judge: a mix of train rows and paraphrases
    mix = gsm_train[: args.throughput_rows] + para_texts
    t0 = time.perf_counter()
    n_hits = ngram.check(mix)
    rest = [t for t, h in zip(mix, n_hits) if h is None]
    checker.check(rest)
    seconds = time.perf_counter() - t0
    report["throughput_no_judge"] = {"rows": len(mix), "seconds": round(seconds, 1), "rows_per_s": round(len(mix) / seconds, 1)}
    gsm_band = float(((neg_scores["gsm8k_train"] >= args.band_low) & (neg_scores["gsm8k_train"] < args.threshold)).mean())
    report["gsm8k_train_band_fraction"] = round(gsm_band, 4)

    if args.judge_base_url:  # negatives: the train rows that score in the band (the ones a judge is asked about)
        band = [rows[i] for rows, name in ((gsm_train, "gsm8k_train"), (math_train, "math_train"))
                for i in np.flatnonzero((neg_scores[name] >= args.band_low) & (neg_scores[name] < args.threshold))]
        report["judge"] = judged = run_judge(args, checker, paras, band[: args.judge_negatives])
        per_call = judged["seconds"] / max(judged["stats"]["judged"], 1)
        judged["seconds_per_judge_call"] = round(per_call, 1)
        # rows/s of the step with the judge on GSM8K-train-like rows: embedding plus the band's share of calls
        judged["projected_rows_per_s_gsm8k_train"] = round(
            1 / (1 / report["throughput_no_judge"]["rows_per_s"] + gsm_band * per_call), 3
        )
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


def train_vectors(name: str, rows: list[str], checker: SemanticDecontaminator, cache_dir: Path | None) -> np.ndarray:
    from pipeline.dedup.semantic import cached_vectors, default_cache_dir

    items = [(str(i), text) for i, text in enumerate(rows)]
    return cached_vectors(f"bench-{name}", items, checker.embedder, Path(cache_dir or default_cache_dir()), None)


class SequentialJudge:
    """The judge role for the bench: the openai client, one request at a time, long timeout (the shared llama.cpp
    server answers nothing else while it generates). Same ``complete`` contract as ``pipeline.llm.LLMClient``."""

    def __init__(self, base_url: str, model: str, timeout: float) -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key="none", timeout=timeout, max_retries=1)
        self.model = model
        self.calls = 0

    def complete(self, requests: list[Any], **_: Any) -> list[Any]:
        from pipeline.llm.types import Completion

        out = []
        for req in requests:
            try:
                reply = self.client.chat.completions.create(
                    model=self.model, messages=req.messages, temperature=req.temperature, max_tokens=req.max_tokens,
                    seed=req.seed,
                )
                out.append(Completion(texts=[reply.choices[0].message.content or ""],
                                      finish_reasons=[reply.choices[0].finish_reason or "stop"]))
            except Exception as exc:  # noqa: BLE001 - one failed request leaves its row in, as in the pipeline
                out.append(Completion.failed(str(exc)))
            self.calls += 1
            print(f"judge: {self.calls} asked", file=sys.stderr)
        return out


def run_judge(args: argparse.Namespace, checker: SemanticDecontaminator, paras: list[dict[str, Any]],
              negatives: list[str]) -> dict[str, Any]:
    """The judge on the ambiguous band: its verdicts on paraphrases (should be same) and on train rows (should be
    different), and the step's rows/s with it."""
    judge = SequentialJudge(args.judge_base_url, args.judge_model, args.timeout)
    judged = SemanticDecontaminator(
        benchmark_files=benchmark_files(args.data), threshold=args.threshold, band_low=args.band_low,
        judge=judge, cache_dir=args.cache_dir, embedder=checker.embedder,
    )
    para_texts = [p["paraphrase"] for p in paras]
    t0 = time.perf_counter()
    para_hits = judged.check(para_texts)
    neg_hits = judged.check(negatives)
    seconds = time.perf_counter() - t0
    rows = len(para_texts) + len(negatives)
    return {
        "model": args.judge_model,
        "band": [args.band_low, args.threshold],
        "recall_semantic_with_judge": round(float(np.mean([h is not None for h in para_hits])), 3),
        "negatives": len(negatives),
        "fp_negatives_with_judge": round(float(np.mean([h is not None for h in neg_hits])), 4),
        "judge_said_same_on_paraphrases": sum(1 for h in para_hits if h is not None and h.judge == "same"),
        "judge_said_same_on_negatives": sum(1 for h in neg_hits if h is not None and h.judge == "same"),
        "stats": dict(judged.stats),
        "rows": rows,
        "seconds": round(seconds, 1),
        "rows_per_s": round(rows / seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="make the paraphrase set with a real model")
    gen.add_argument("--base-url", required=True)
    gen.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    gen.add_argument("--data", type=Path, default=DEFAULT_DATA)
    gen.add_argument("--gsm-rephrase", type=int, default=50)
    gen.add_argument("--gsm-persona", type=int, default=40)
    gen.add_argument("--math-rephrase", type=int, default=25)
    gen.add_argument("--math-persona", type=int, default=15)
    gen.add_argument("--max-tokens", type=int, default=256)
    gen.add_argument("--timeout", type=float, default=900.0, help="seconds for one request")
    mea = sub.add_parser("measure", help="recall, false positives, throughput")
    mea.add_argument("--data", type=Path, default=DEFAULT_DATA)
    mea.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    mea.add_argument("--band-low", type=float, default=DEFAULT_BAND_LOW)
    mea.add_argument("--files", action="store_true", help="embed the benchmark texts instead of the shipped vectors")
    mea.add_argument("--cache-dir", type=Path, default=None)
    mea.add_argument("--sample", type=int, default=0, help="use N train rows of each set (0: all)")
    mea.add_argument("--judge-base-url", default=None)
    mea.add_argument("--judge-model", default="qwen2.5-coder-0.5b-instruct")
    mea.add_argument("--judge-negatives", type=int, default=40, help="train rows in the band to ask the judge about")
    mea.add_argument("--throughput-rows", type=int, default=2000, help="GSM8K train rows in the throughput mix")
    mea.add_argument("--timeout", type=float, default=900.0, help="seconds for one judge request")
    mea.add_argument("--out", default=None, help="also write the report JSON here")
    args = parser.parse_args(argv)
    return generate(args) if args.command == "generate" else measure(args)


if __name__ == "__main__":
    raise SystemExit(main())
