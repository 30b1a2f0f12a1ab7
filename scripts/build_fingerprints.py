"""Build the benchmark fingerprints shipped in data/benchmarks/ (GSM8K test, MATH500).

    python scripts/build_fingerprints.py [--source DIR] [--out data/benchmarks] [--ngram 13]

DIR holds the public files, as in the project's shared data folder: gsm8k/test.jsonl (openai/grade-school-math,
MIT), math/test.jsonl (MATH500 = PRM800K test split, MIT) and, as the boilerplate reference corpus, gsm8k/train.jsonl
and math/train.jsonl.gz. Each benchmark gets fingerprints.npz + meta.json (item ids, source sha256, parameters) +
its licence files. Only hashes are shipped, never the problem text.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.dedup.decontam import FINGERPRINTS_DIR, build_fingerprint  # noqa: E402


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def benchmark_items(source: Path) -> dict[str, dict]:
    gsm_path = source / "gsm8k" / "test.jsonl"
    math_path = source / "math" / "test.jsonl"
    gsm = read_jsonl(gsm_path)
    math = read_jsonl(math_path)
    return {
        "gsm8k-test": {
            "items": [(str(line), row["question"]) for line, row in enumerate(gsm, start=1)],
            "source": gsm_path,
            "licenses": [source / "gsm8k" / "LICENSE"],
            "meta": {
                "origin": "openai/grade-school-math grade_school_math/data/test.jsonl "
                "(commit 3101c7d5072418e28b9008a6636bde82a006892c)",
                "license": "MIT",
                "id_scheme": "1-based line number in test.jsonl",
            },
        },
        "math500": {
            "items": [(row["unique_id"], row["problem"]) for row in math],
            "source": math_path,
            "licenses": [source / "math" / "LICENSE", source / "math" / "LICENSE.MATH"],
            "meta": {
                "origin": "MATH500 = openai/prm800k prm800k/math_splits/test.jsonl "
                "(copied from ZubinGou/math-evaluation-harness data/math_oai/test.jsonl)",
                "license": "MIT (openai/prm800k; hendrycks/math)",
                "id_scheme": "unique_id",
            },
        },
    }


def reference_corpus(source: Path) -> tuple[list[str], dict[str, str]]:
    gsm_train = source / "gsm8k" / "train.jsonl"
    math_train = source / "math" / "train.jsonl.gz"
    texts = [row["question"] for row in read_jsonl(gsm_train)] + [
        row["problem"] for row in read_jsonl(math_train)
    ]
    return texts, {
        str(gsm_train.relative_to(source)): sha256(gsm_train),
        str(math_train.relative_to(source)): sha256(math_train),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--out", type=Path, default=FINGERPRINTS_DIR)
    parser.add_argument("--ngram", type=int, default=13)
    parser.add_argument("--num-perm", type=int, default=128)
    args = parser.parse_args(argv)
    if not (args.source / "gsm8k" / "test.jsonl").exists():
        parser.error(f"{args.source}: gsm8k/test.jsonl not found (pass --source)")
    reference, reference_sha = reference_corpus(args.source)
    for name, spec in benchmark_items(args.source).items():
        fingerprint = build_fingerprint(
            name,
            spec["items"],
            reference_texts=reference,
            ngram=args.ngram,
            num_perm=args.num_perm,
            meta={
                **spec["meta"],
                "source_file": str(spec["source"].relative_to(args.source)),
                "source_sha256": sha256(spec["source"]),
                "boilerplate_reference": reference_sha,
                "boilerplate_rule": f"{args.ngram}-grams found in >= 2 reference problems are not shipped",
                "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "built_by": "scripts/build_fingerprints.py",
            },
        )
        out = args.out / name
        fingerprint.save(out)
        for licence in spec["licenses"]:
            shutil.copyfile(licence, out / licence.name)
        size = sum(p.stat().st_size for p in out.iterdir())
        print(
            f"{name}: {len(fingerprint.ids)} items, {len(fingerprint.ngrams)} n-grams, {size / 1e6:.2f} MB -> {out}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
