"""Build the default embedding model's vectors of the shipped benchmarks (semantic decontamination, issue 21).

    python scripts/build_semantic_vectors.py [--source DIR] [--model sentence-transformers/all-MiniLM-L6-v2]

Reads the same public files as ``build_fingerprints.py`` (DIR/gsm8k/test.jsonl, DIR/math/test.jsonl) and writes
``data/benchmarks/<name>/semantic/<model>.npz``: float16 unit vectors in fingerprint item order, a probe vector
(checked on load, so another model or version is an error, not silent misses) and the source sha256. Vectors,
like the fingerprints, are not the problem text. Needs the ``semantic`` extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_fingerprints import benchmark_items, sha256  # noqa: E402

from pipeline.dedup.decontam import FINGERPRINTS_DIR, Fingerprint  # noqa: E402
from pipeline.dedup.semantic import DEFAULT_MODEL, Embedder, save_shipped_vectors  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--out", type=Path, default=FINGERPRINTS_DIR)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args(argv)
    if not (args.source / "gsm8k" / "test.jsonl").exists():
        parser.error(f"{args.source}: gsm8k/test.jsonl not found (pass --source)")
    embedder = Embedder(args.model)
    for name, spec in benchmark_items(args.source).items():
        fingerprint = Fingerprint.load(args.out / name)
        ids = [item for item, _ in spec["items"]]
        if ids != fingerprint.ids or sha256(spec["source"]) != fingerprint.meta.get("source_sha256"):
            parser.error(f"{name}: the source differs from the shipped fingerprints; rebuild those first")
        path = save_shipped_vectors(name, spec["items"], embedder, fingerprint.meta["source_sha256"], args.out)
        print(f"{name}: {len(ids)} vectors, {path.stat().st_size / 1e6:.2f} MB -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
