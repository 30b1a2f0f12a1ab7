"""An on-disk signature index: one append-only ``uint32`` file of MinHash rows plus a JSON manifest.

Why on disk: a million 128-permutation signatures are 512 MB. Clustering reads them in blocks to compute band
keys (8 bytes per row and band, the part that stays in memory) and then row by row for the pairs it verifies,
so peak memory follows the band keys, not the signatures and never the records.
Why a manifest of batch digests: a run that stops half way (or a rerun over the same input) finds the
signatures of every batch whose question texts are unchanged and does not hash them again.

Signatures are computed on all cores (``workers``) in a process pool: forked when the caller has a single thread
(cheap, and safe for scripts without a ``__main__`` guard), spawned when it has more (a threaded Prefect task
runner: forking a threaded process can deadlock). If the pool cannot start, hashing falls back to this process.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import threading
import warnings
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.dedup.minhash import (
    SHINGLES,
    minhash_from_shingles,
    number_keys,
    permutations,
    shingle_hashes,
    token_hashes,
)
from pipeline.dedup.text import TOKENIZER_VERSION, tokens

INDEX_VERSION = 1
SIGNATURES = "signatures.u32"
MANIFEST = "index.json"
_SUB_BATCH = 2_000


def hash_texts(
    texts: Sequence[str], num_perm: int, seed: int, perms: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Signatures and number keys of ``texts`` (the unit of work a worker process runs)."""
    toks = [tokens(t) for t in texts]
    hashed = token_hashes(toks)
    hashes, starts = shingle_hashes(toks, hashed)
    sigs = minhash_from_shingles(hashes, starts, num_perm, seed, perms)
    return sigs, number_keys(*hashed)


def batch_digest(texts: Sequence[str]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def default_workers() -> int:
    """All cores, up to 8 (hashing scales about linearly; more workers mostly wait on the reader)."""
    return max(1, min(8, os.cpu_count() or 1))


@dataclass
class _Pending:
    kind: str
    digest: str
    rows: int
    futures: list[Future] | None
    ready: tuple[np.ndarray, np.ndarray] | None
    texts: list[Sequence[str]] | None = None


class SignatureIndex:
    """Signatures of every row seen, appended batch by batch, reusable across runs with the same input."""

    def __init__(
        self, directory: Path, num_perm: int = 128, seed: int = 1, workers: int | None = None
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.num_perm = num_perm
        self.seed = seed
        self.workers = default_workers() if workers is None else max(1, workers)
        self.params = {
            "index_version": INDEX_VERSION,
            "tokenizer_version": TOKENIZER_VERSION,
            "shingles": SHINGLES,
            "num_perm": num_perm,
            "seed": seed,
        }
        self._old_chunks = self._load_manifest()
        self.chunks: list[dict[str, Any]] = []
        self.rows = 0
        self.reused_rows = 0
        self._numkeys: list[np.ndarray] = []
        self._sig_file = (self.directory / SIGNATURES).open("r+b" if self._old_chunks else "wb")
        self._pending: deque[_Pending] = deque()
        self._pool: ProcessPoolExecutor | None = None

    # -- manifest ---------------------------------------------------------------------------------------------
    def _load_manifest(self) -> list[dict[str, Any]]:
        path = self.directory / MANIFEST
        sig_path = self.directory / SIGNATURES
        if not path.exists() or not sig_path.exists():
            return []
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError:
            return []
        if manifest.get("params") != self.params:
            return []  # different hashing: nothing can be reused
        chunks = manifest.get("chunks", [])
        if sig_path.stat().st_size < sum(c["rows"] for c in chunks) * self.num_perm * 4:
            return []
        return chunks

    def _write_manifest(self) -> None:
        path = self.directory / MANIFEST
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"params": self.params, "chunks": self.chunks}, indent=1))
        os.replace(tmp, path)

    # -- adding rows --------------------------------------------------------------------------------------------
    def add(self, texts: Sequence[str], kind: str = "input") -> None:
        """Queue a batch; its signatures are written in order once computed (see ``flush``)."""
        digest = batch_digest(texts)
        position = len(self.chunks) + len(self._pending)
        old = self._old_chunks[position] if position < len(self._old_chunks) else None
        if old is not None and old["digest"] == digest and old["kind"] == kind and old["rows"] == len(texts):
            numkeys = np.load(self.directory / f"numkeys-{position:06d}.npy")
            self._pending.append(_Pending(kind, digest, len(texts), None, (None, numkeys)))  # type: ignore[arg-type]
        else:
            self._old_chunks = self._old_chunks[:position]  # everything after a change is recomputed
            if self.workers > 1 and len(texts) > _SUB_BATCH:
                pool = self._get_pool()
                subs = [texts[i : i + _SUB_BATCH] for i in range(0, len(texts), _SUB_BATCH)]
                perms = permutations(self.num_perm, self.seed)
                futures = [pool.submit(hash_texts, list(s), self.num_perm, self.seed, perms) for s in subs]
                self._pending.append(_Pending(kind, digest, len(texts), futures, None, subs))
            else:
                self._pending.append(
                    _Pending(kind, digest, len(texts), None, hash_texts(texts, self.num_perm, self.seed))
                )
        while len(self._pending) > 2 * self.workers:
            self._finish_one()

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            single = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if single else "spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
        return self._pool

    def _results(self, item: _Pending, texts_of: list[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        try:
            parts = [f.result() for f in item.futures or []]
        except BrokenProcessPool as exc:
            warnings.warn(
                f"hashing workers failed ({exc}); hashing in this process", RuntimeWarning, stacklevel=3
            )
            self._pool = None
            self.workers = 1
            parts = [hash_texts(t, self.num_perm, self.seed) for t in texts_of]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _finish_one(self) -> None:
        item = self._pending.popleft()
        position = len(self.chunks)
        offset = self.rows * self.num_perm * 4
        if item.futures is not None:
            sigs, numkeys = self._results(item, item.texts or [])
        else:
            sigs, numkeys = item.ready  # type: ignore[misc]
        if sigs is None:
            self.reused_rows += item.rows
        else:
            self._sig_file.seek(offset)
            self._sig_file.write(np.ascontiguousarray(sigs, dtype=np.uint32).tobytes())
            self._sig_file.flush()
            np.save(self.directory / f"numkeys-{position:06d}.npy", numkeys)
        self._numkeys.append(numkeys)
        self.chunks.append({"kind": item.kind, "digest": item.digest, "rows": item.rows})
        self.rows += item.rows
        self._write_manifest()

    def flush(self) -> None:
        while self._pending:
            self._finish_one()

    def close(self) -> None:
        self.flush()
        self._sig_file.truncate(self.rows * self.num_perm * 4)
        self._sig_file.close()
        for stale in self.directory.glob("numkeys-*.npy"):
            if int(stale.stem.split("-")[1]) >= len(self.chunks):
                stale.unlink()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def abort(self) -> None:
        """Stop workers without waiting for queued batches (the manifest keeps every finished batch)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._sig_file.close()

    # -- reading --------------------------------------------------------------------------------------------
    def signatures(self) -> np.ndarray:
        """All signatures, memory-mapped read-only (call after ``close``)."""
        if self.rows == 0:
            return np.empty((0, self.num_perm), dtype=np.uint32)
        return np.memmap(
            self.directory / SIGNATURES, dtype=np.uint32, mode="r", shape=(self.rows, self.num_perm)
        )

    def number_keys(self) -> np.ndarray:
        return np.concatenate(self._numkeys) if self._numkeys else np.empty(0, dtype=np.int64)

    def rows_of(self, kind: str) -> int:
        return sum(c["rows"] for c in self.chunks if c["kind"] == kind)
