"""Dedup and decontamination bench: every figure against a baseline measured in the same run.

    python bench/dedup_bench.py [--rows 1000000] [--skip-scale] [--data /work/shared/data]

(a) throughput of ``near_dedup`` against a plain datasketch loop (``MinHash(num_perm=128)``, ``update`` per
    shingle, ``MinHashLSH`` query + insert, union-find) on the same rows: GSM8K + MATH questions plus planted
    near-duplicates (word swaps, insertions, deletions, punctuation/whitespace/case noise) and number variants
    (one or two numbers changed: must stay distinct);
(b) pair precision and recall of both against the planted ground truth;
(c) peak RSS and rows/s of ``near_dedup`` on synthetic rows (1M by default), in a child process;
(d) decontamination recall on lightly edited GSM8K test / MATH500 questions, false-positive rate on all of GSM8K
    train and MATH train (shipped fingerprints, and held out: boilerplate list built from the other half).

Needs the shared data folder (GSM8K, MATH); prints a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from datasketch import MinHash, MinHashLSH  # noqa: E402

from pipeline.dedup import contaminated, near_dedup  # noqa: E402
from pipeline.dedup.decontam import Decontaminator, Fingerprint, build_fingerprint  # noqa: E402
from pipeline.dedup.minhash import number_key  # noqa: E402
from pipeline.dedup.text import tokens  # noqa: E402
from pipeline.records import make_record  # noqa: E402

NUM = re.compile(r"\d+")
PLAIN = re.compile(r"^[A-Za-z]+[,.?]?$")
FILLERS = ["very", "really", "also", "just", "then", "now", "indeed", "still"]
PREFIXES = [
    "Question:",
    "Suppose",
    "Consider this:",
    "Here is a problem.",
    "Solve:",
    "Try this one.",
    "Problem:",
]


# -- data -------------------------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load(data: Path) -> dict[str, list[str]]:
    return {
        "gsm8k-train": [r["question"] for r in read_jsonl(data / "gsm8k" / "train.jsonl")],
        "gsm8k-test": [r["question"] for r in read_jsonl(data / "gsm8k" / "test.jsonl")],
        "math-train": [r["problem"] for r in read_jsonl(data / "math" / "train.jsonl.gz")],
        "math500": [r["problem"] for r in read_jsonl(data / "math" / "test.jsonl")],
    }


# -- edits ------------------------------------------------------------------------------------------------------
def noise(rng: random.Random, q: str) -> str:
    """Punctuation, whitespace and case noise."""
    words = q.split(" ")
    i = rng.randrange(len(words))
    words[i] = words[i] + rng.choice([",", "", " "])
    q = " ".join(words).replace(" ", "  ", rng.randint(0, 2))
    q = q.rstrip(".?! ") + rng.choice(["?", ".", " .", "!?", "??"])
    return q.upper() if rng.random() < 0.05 else (q[0].lower() + q[1:] if rng.random() < 0.3 else q)


def word_edit(rng: random.Random, q: str) -> str:
    """Swap two adjacent plain words, insert a filler word, or delete a plain word (never a number/formula)."""
    words = q.split(" ")
    plain = [i for i, w in enumerate(words) if PLAIN.match(w)]
    op = rng.choice(["swap", "insert", "delete"])
    adjacent = [i for i in plain if i + 1 in plain]
    if op == "swap" and adjacent:
        i = rng.choice(adjacent)
        words[i], words[i + 1] = words[i + 1], words[i]
    elif op == "delete" and len(plain) > 2:
        del words[rng.choice(plain)]
    else:
        words.insert(rng.choice(plain) if plain else 0, rng.choice(FILLERS))
    return " ".join(words)


def change_numbers(rng: random.Random, q: str, most: int = 2) -> str:
    found = list(NUM.finditer(q))
    if not found:
        return q
    k = 2 if most >= 2 and len(found) >= 4 and rng.random() < 0.5 else 1
    for m in sorted(rng.sample(found, k), key=lambda m: -m.start()):
        q = q[: m.start()] + str(int(m.group()) + rng.choice([1, 2, 3, 5, 10])) + q[m.end() :]
    return q


def reword_start(rng: random.Random, q: str) -> str:
    words = q.split(" ")
    k = 0
    while k < min(3, len(words) - 1) and PLAIN.match(words[k]):
        k += 1
    k = rng.randint(min(1, k), k) if k else 0
    return rng.choice(PREFIXES) + " " + " ".join(words[k:])


def near_copy(rng: random.Random, q: str) -> str:
    edits = 1 + (len(q.split()) >= 40)
    for _ in range(edits):
        q = word_edit(rng, q)
    return noise(rng, q)


def light_edit(rng: random.Random, q: str) -> str:
    """A test question as it might leak: 1–2 of {1–2 numbers changed, reworded opening, a word edit} + noise."""
    for op in rng.sample([change_numbers, reword_start, word_edit], rng.choice([1, 2])):
        q = op(rng, q)
    return noise(rng, q)


# -- (a)+(b) near-dup quality and throughput -------------------------------------------------------------------
def shingles(text: str) -> list[str]:
    toks = tokens(text)
    return sorted(set(toks) | {f"{a} {b}" for a, b in zip(toks, toks[1:])}) or [""]


def exact_jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def clean_base(questions: list[str], threshold: float = 0.7) -> tuple[list[str], int]:
    """Originals with no natural near-duplicate among themselves (true Jaccard ≥ ``threshold``, same numbers),
    so every clustered pair in the bench is a planted one or a mistake."""
    sets = [set(shingles(q)) for q in questions]
    keys = [number_key(tokens(q)) for q in questions]
    minhashes = MinHash.bulk([[s.encode() for s in x] for x in sets], num_perm=128)
    lsh = MinHashLSH(threshold=threshold - 0.2, num_perm=128)
    dropped: set[int] = set()
    for i, m in enumerate(minhashes):
        for j in lsh.query(m):
            if keys[i] == keys[j] and exact_jaccard(sets[i], sets[j]) >= threshold:
                dropped.add(i)
                break
        if i not in dropped:
            lsh.insert(i, m)
    return [q for i, q in enumerate(questions) if i not in dropped], len(dropped)


def planted_rows(base: list[str], seed: int = 0) -> tuple[list[str], list[int]]:
    """Texts and their ground-truth group: originals, near copies (same group), number variants (own group)."""
    rng = random.Random(seed)
    texts: list[str] = []
    group: list[int] = []
    next_group = len(base)
    for g, q in enumerate(base):
        texts.append(q)
        group.append(g)
        if rng.random() < 0.5:
            for _ in range(rng.choice([1, 1, 2])):
                texts.append(near_copy(rng, q))
                group.append(g)
        if rng.random() < 0.25 and NUM.search(q):
            texts.append(noise(rng, change_numbers(rng, q)))
            group.append(next_group)
            next_group += 1
    order = list(range(len(texts)))
    rng.shuffle(order)
    return [texts[i] for i in order], [group[i] for i in order]


def pairs_of(labels: list[int]) -> set[tuple[int, int]]:
    members: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        members[label].append(i)
    return {(a, b) for m in members.values() if len(m) > 1 for a, b in itertools.combinations(sorted(m), 2)}


def precision_recall(predicted: list[int], truth: list[int]) -> tuple[float, float, int]:
    pred, true = pairs_of(predicted), pairs_of(truth)
    hit = len(pred & true)
    return (hit / len(pred) if pred else 1.0), (hit / len(true) if true else 1.0), len(true)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def plain_datasketch(texts: list[str], threshold: float = 0.8) -> list[int]:
    """The loop most projects write: one MinHash per text, ``update`` per shingle, LSH query then insert.

    Same shingles and the same number rule as ours, so quality is comparable and only the speed differs."""
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    uf = _UnionFind(len(texts))
    minhashes: list[MinHash] = []
    for i, text in enumerate(texts):
        m = MinHash(num_perm=128)
        for s in shingles(text):
            m.update(s.encode("utf-8"))
        key = number_key(tokens(text))
        for j in lsh.query(m):
            if number_key(tokens(texts[j])) == key and m.jaccard(minhashes[j]) >= threshold:
                uf.union(i, j)
        lsh.insert(i, m)
        minhashes.append(m)
    return [uf.find(i) for i in range(len(texts))]


def ours(texts: list[str], threshold: float = 0.8, workers: int | None = None) -> tuple[list[int], float]:
    """``near_dedup`` over records (timed from a cold token-hash cache, as a fresh process would start)."""
    from pipeline.dedup import minhash

    minhash._TOKEN_CACHE.clear()
    records = [make_record(question=t, solution=None, answer=None, method="seed") for t in texts]
    for i, r in enumerate(records):
        r["id"] = f"{i:08d}"
    started = time.perf_counter()
    kept = list(near_dedup(records, threshold=threshold, workers=workers))
    seconds = time.perf_counter() - started
    return [int(r["id"]) for r in kept], seconds


def ours_labels(texts: list[str], threshold: float = 0.8) -> list[int]:
    from pipeline.dedup import near_duplicate_clusters

    return near_duplicate_clusters(texts, threshold=threshold)


# -- (c) scale ---------------------------------------------------------------------------------------------------
SCALE_CHILD = r"""
import random, re, resource, sys, time, json
sys.path.insert(0, sys.argv[3])
from pipeline.dedup import near_dedup
from pipeline.records import make_record

bases = json.load(open(sys.argv[2]))
NUM = re.compile(r"\d+")
def rows(n):
    rng = random.Random(0)
    prev = None
    for i in range(n):
        if prev is not None and rng.random() < 0.2:  # a near copy of the previous row
            q = prev.replace(" ", "  ", 1).rstrip("?.") + " ?"
        else:
            q = bases[i % len(bases)]
            variant = i // len(bases)
            q = NUM.sub(lambda m: str(int(m.group()) + variant), q)  # a number variant: distinct
            if rng.random() < 0.5:
                words = q.split(" ")
                words.insert(rng.randrange(len(words) + 1), f"w{rng.randrange(10**6)}")
                q = " ".join(words)
        prev = q
        yield make_record(question=q, solution="worked solution " * 20, answer="1", method="seed")

n = int(sys.argv[1])
start = time.perf_counter()
kept = sum(1 for _ in near_dedup(rows(n)))
seconds = time.perf_counter() - start
self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rows": n, "kept": kept, "seconds": seconds, "peak_rss_mb": self_kb / 1024,
                  "worker_peak_rss_mb": child_kb / 1024}))
"""


def scale_run(n: int, bases: list[str], tmp: Path) -> dict:
    base_file = tmp / "bases.json"
    base_file.write_text(json.dumps(bases))
    done = subprocess.run(
        [sys.executable, "-c", SCALE_CHILD, str(n), str(base_file), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- (d) decontamination ---------------------------------------------------------------------------------------
def decontam_eval(data: dict[str, list[str]], rng: random.Random) -> dict:
    gsm_edit = [light_edit(rng, q) for q in data["gsm8k-test"]]
    math_edit = [light_edit(rng, q) for q in data["math500"]]
    flagged = lambda texts, check=contaminated: np.array([x is not None for x in check(texts)])  # noqa: E731
    out = {
        "recall_gsm8k_test_edited": flagged(gsm_edit).mean(),
        "recall_math500_edited": flagged(math_edit).mean(),
        "recall_unedited": flagged(data["gsm8k-test"] + data["math500"]).mean(),
    }
    started = time.perf_counter()
    fp_gsm = flagged(data["gsm8k-train"])
    fp_math = flagged(data["math-train"])
    out["check_rows_per_s"] = (len(fp_gsm) + len(fp_math)) / (time.perf_counter() - started)
    out["fp_gsm8k_train"], out["fp_math_train"] = fp_gsm.mean(), fp_math.mean()
    out["fp_train"] = np.r_[fp_gsm, fp_math].mean()
    out["recall_edited"] = np.r_[flagged(gsm_edit), flagged(math_edit)].mean()
    # held out: the boilerplate list comes from one half of train, false positives are counted on the other
    train = data["gsm8k-train"] + data["math-train"]
    held: list[np.ndarray] = []
    shipped = {
        name: Fingerprint.load(ROOT / "data" / "benchmarks" / name) for name in ("gsm8k-test", "math500")
    }
    for fold in (0, 1):
        reference = [q for i, q in enumerate(train) if i % 2 != fold]
        fps = [
            build_fingerprint(
                "gsm8k-test", [(str(i + 1), q) for i, q in enumerate(data["gsm8k-test"])], reference
            ),
            build_fingerprint("math500", list(zip(shipped["math500"].ids, data["math500"])), reference),
        ]
        checker = Decontaminator(fingerprints=fps)
        held.append(flagged([q for i, q in enumerate(train) if i % 2 == fold], checker.check))
    n_gsm = len(data["gsm8k-train"])
    is_gsm = np.r_[np.arange(len(train))[0::2] < n_gsm, np.arange(len(train))[1::2] < n_gsm]
    all_held = np.r_[held[0], held[1]]
    out["fp_train_heldout"] = all_held.mean()
    out["fp_gsm8k_train_heldout"] = all_held[is_gsm].mean()
    out["fp_math_train_heldout"] = all_held[~is_gsm].mean()
    return out


# -- main ---------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MATHAUG_SHARED_DATA", "/work/shared/data"))
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for the scale run (c)")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not (args.data / "gsm8k" / "train.jsonl").exists():
        parser.error(f"{args.data}: GSM8K/MATH data not found (pass --data)")
    data = load(args.data)
    figures: dict[str, float | int | str] = {}

    questions = data["gsm8k-train"] + data["gsm8k-test"] + data["math-train"] + data["math500"]
    base, removed = clean_base(questions)
    texts, truth = planted_rows(base)
    figures.update(rows=len(texts), originals=len(base), natural_near_dups_removed=removed)
    print(
        f"(a/b) {len(texts):,} rows: {len(base):,} originals ({removed} natural near-dups set aside), "
        f"{len(texts) - len(base):,} planted copies and number variants",
        flush=True,
    )

    started = time.perf_counter()
    baseline_labels = plain_datasketch(texts, args.threshold)
    baseline_s = time.perf_counter() - started
    kept_ids, ours_s = ours(texts, args.threshold)
    _, ours_one_s = ours(texts, args.threshold, workers=1)
    labels = ours_labels(texts, args.threshold)
    kept_truth = len(set(truth))
    p, r, true_pairs = precision_recall(labels, truth)
    bp, br, _ = precision_recall(baseline_labels, truth)
    figures.update(
        baseline_rows_per_s=len(texts) / baseline_s,
        ours_rows_per_s=len(texts) / ours_s,
        speedup=baseline_s / ours_s,
        ours_one_worker_rows_per_s=len(texts) / ours_one_s,
        speedup_one_worker=baseline_s / ours_one_s,
        precision=p,
        recall=r,
        baseline_precision=bp,
        baseline_recall=br,
        true_pairs=true_pairs,
        kept=len(kept_ids),
        kept_truth=kept_truth,
        same_clusters_as_step=len(set(labels)) == len(kept_ids),
    )
    print(
        f"  plain datasketch loop: {len(texts) / baseline_s:,.0f} rows/s ({baseline_s:.1f}s)  "
        f"P={bp:.4f} R={br:.4f}"
    )
    print(
        f"  near_dedup:            {len(texts) / ours_s:,.0f} rows/s ({ours_s:.1f}s)  P={p:.4f} R={r:.4f}  "
        f"speedup {baseline_s / ours_s:.1f}x; kept {len(kept_ids):,} (truth {kept_truth:,})",
        flush=True,
    )
    print(f"  near_dedup, 1 worker:  {len(texts) / ours_one_s:,.0f} rows/s ({baseline_s / ours_one_s:.1f}x)")

    rng = random.Random(1)
    started = time.perf_counter()
    dec = decontam_eval(data, rng)
    figures.update({k: float(v) for k, v in dec.items()})
    print(
        f"(d) decontamination ({time.perf_counter() - started:.0f}s): recall on edited GSM8K test "
        f"{dec['recall_gsm8k_test_edited']:.3f}, MATH500 {dec['recall_math500_edited']:.3f} "
        f"(all {dec['recall_edited']:.3f}; unedited {dec['recall_unedited']:.3f}); false positives on GSM8K "
        f"train {dec['fp_gsm8k_train']:.4f}, MATH train {dec['fp_math_train']:.4f} (all {dec['fp_train']:.4f}); "
        f"held out: GSM8K {dec['fp_gsm8k_train_heldout']:.4f}, MATH {dec['fp_math_train_heldout']:.4f} "
        f"(all {dec['fp_train_heldout']:.4f}); {dec['check_rows_per_s']:,.0f} rows/s",
        flush=True,
    )

    if not args.skip_scale:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            scale = scale_run(args.rows, questions, Path(tmp))
        figures.update({f"scale_{k}": v for k, v in scale.items()})
        print(
            f"(c) {scale['rows']:,} synthetic rows: {scale['rows'] / scale['seconds']:,.0f} rows/s "
            f"({scale['seconds']:.0f}s), kept {scale['kept']:,}, peak RSS {scale['peak_rss_mb']:,.0f} MB "
            f"(hashing workers {scale['worker_peak_rss_mb']:,.0f} MB each)",
            flush=True,
        )

    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=float))
    print("\n" + markdown(figures))
    return 0


def markdown(f: dict) -> str:
    lines = [
        "| figure | value |",
        "| --- | --- |",
        f"| rows (GSM8K+MATH originals + planted) | {f['rows']:,} ({f['originals']:,} originals) |",
        f"| plain datasketch loop | {f['baseline_rows_per_s']:,.0f} rows/s |",
        f"| `near_dedup` (2 workers) | {f['ours_rows_per_s']:,.0f} rows/s |",
        f"| speedup, same run | **{f['speedup']:.1f}×** |",
        f"| `near_dedup`, 1 worker | {f['ours_one_worker_rows_per_s']:,.0f} rows/s ({f['speedup_one_worker']:.1f}×) |",
        f"| pair precision / recall, ours | **{f['precision']:.4f} / {f['recall']:.4f}** ({f['true_pairs']:,} planted pairs) |",
        f"| pair precision / recall, plain loop | {f['baseline_precision']:.4f} / {f['baseline_recall']:.4f} |",
        f"| decontam recall, edited GSM8K test / MATH500 | **{f['recall_gsm8k_test_edited']:.3f} / {f['recall_math500_edited']:.3f}** |",
        f"| decontam false positives, GSM8K train / MATH train / all | **{f['fp_gsm8k_train']:.4f} / {f['fp_math_train']:.4f} / {f['fp_train']:.4f}** |",
        f"| same, boilerplate list held out | {f['fp_gsm8k_train_heldout']:.4f} / {f['fp_math_train_heldout']:.4f} / {f['fp_train_heldout']:.4f} |",
        f"| decontam check speed | {f['check_rows_per_s']:,.0f} rows/s |",
    ]
    if "scale_rows" in f:
        lines += [
            f"| scale: rows, rows/s | {f['scale_rows']:,}, **{f['scale_rows'] / f['scale_seconds']:,.0f} rows/s** ({f['scale_seconds']:.0f} s) |",
            f"| scale: peak RSS (main / each hashing worker) | **{f['scale_peak_rss_mb']:,.0f} MB** / {f['scale_worker_peak_rss_mb']:,.0f} MB |",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
