"""Recipes: one YAML file says which seeds, which stages with which parameters, and how rows are kept.

Validated with pydantic. Every error is reported as ``FILE:LINE: path.to.key: message`` so a typo in a
200-line recipe is found at once. ``${VAR}`` and ``${VAR:-default}`` in values expand from the environment
(e.g. the model path on a GPU box), before validation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.io.seeds import SeedSpec
from pipeline.stages import get_stage, known_methods

ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class StageSpec(BaseModel):
    """One generation stage: its method, where its input comes from, and its parameters."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: str
    name: str | None = Field(None, description="unique stage name (default: the method)")
    from_: list[str] = Field(default_factory=lambda: ["seeds"], alias="from")
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in known_methods():
            raise ValueError(f"unknown method {value!r}; known: {', '.join(known_methods())}")
        return value

    @property
    def stage_name(self) -> str:
        return self.name or self.method

    def parsed_params(self) -> BaseModel:
        return get_stage(self.method).Params(**self.params)


class VerifySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    consistency: bool = Field(
        True, description="re-extract each row's final answer from its solution and require it to match `answer`"
    )
    keep_failed: bool = Field(False, description="keep rows that fail verification (status 'failed')")


class NearDedupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    threshold: float = Field(0.8, gt=0, le=1)
    num_perm: int = Field(128, ge=16, le=1024)


class DedupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exact: bool = True
    near: NearDedupSpec = Field(default_factory=NearDedupSpec)
    against: list[str] = Field(default_factory=list, description="earlier output dirs whose rows count as kept")


class SemanticDecontaminateSpec(BaseModel):
    """The embedding tier (pipeline/dedup/semantic.py). Off by default: it needs the ``semantic`` extra (torch +
    a ~90 MB model), which the base install and the quickstart do not have."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    model: str = Field(
        "sentence-transformers/all-MiniLM-L6-v2", description="sentence-transformers model id or local directory"
    )
    threshold: float = Field(0.80, gt=0, le=1.5, description="adjusted score that flags a row without asking")
    band_low: float = Field(0.65, gt=0, le=1.5, description="with a judge: scores in [band_low, threshold) are asked")
    top_k: int = Field(5, ge=1, le=100)
    judge: str | None = Field(None, description="a model under `models:` that decides the ambiguous band")
    judge_template: str = "decontaminate/same_problem.v1"
    benchmark_files: dict[str, str] = Field(
        default_factory=dict, description="benchmark name -> JSONL of its questions (judge, other models, own sets)"
    )
    cache_dir: str | None = Field(None, description="benchmark vector cache (default ~/.cache/mathaug/semantic)")
    batch_size: int = Field(64, ge=1)
    timeout_s: float = Field(600.0, gt=0, description="give up when embedding 256 texts takes longer")

    @model_validator(mode="after")
    def _band(self) -> SemanticDecontaminateSpec:
        if self.band_low > self.threshold:
            raise ValueError(f"band_low ({self.band_low}) must be <= threshold ({self.threshold})")
        return self


class DecontaminateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    benchmarks: list[str] = Field(default_factory=lambda: ["gsm8k-test", "math500"])
    ngram: int = Field(13, ge=5, le=50)
    semantic: SemanticDecontaminateSpec = Field(default_factory=SemanticDecontaminateSpec)


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows_per_shard: int = Field(50_000, ge=1)
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    include_seeds: bool = Field(True, description="write the seed rows too (method 'seed')")
    split: str = "train"
    license: str | None = Field(None, description="dataset card licence (default: inherited from the seeds)")
    keep_dropped: bool = Field(
        True, description="write every row that verification, dedup or decontamination removed to OUT/dropped/"
    )


class OrchestrationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_runner: Literal["thread", "dask", "ray"] = "thread"
    address: str | None = Field(None, description="join an existing Dask scheduler / Ray cluster")
    max_workers: int | None = Field(None, ge=1)
    batch_retries: int = Field(2, ge=0)


class Recipe(BaseModel):
    """A whole build."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    seed: int = Field(0, description="random seed: same recipe + same seed = same dataset")
    seeds: list[SeedSpec] = Field(min_length=1)
    models: dict[str, Any] = Field(default_factory=dict)
    stages: list[StageSpec] = Field(default_factory=list)
    batch_size: int = Field(1000, ge=1, description="rows per stage batch (the unit of resume and of a task)")
    verify: VerifySpec = Field(default_factory=VerifySpec)
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    decontaminate: DecontaminateSpec = Field(default_factory=DecontaminateSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    orchestration: OrchestrationSpec = Field(default_factory=OrchestrationSpec)

    # where relative paths resolve; set by load_recipe, not part of the YAML
    base_dir: Path | None = Field(None, exclude=True)

    @field_validator("models")
    @classmethod
    def _models(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            return value
        from pipeline.llm.config import ModelConfig

        return {name: ModelConfig.model_validate(cfg) for name, cfg in value.items()}

    @model_validator(mode="after")
    def _stages_consistent(self) -> Recipe:
        seen: set[str] = {"seeds"}
        for i, stage in enumerate(self.stages):
            if stage.stage_name in seen:
                raise ValueError(f"stages.{i}: duplicate stage name {stage.stage_name!r} (set `name:`)")
            for src in stage.from_:
                if src not in seen:
                    raise ValueError(
                        f"stages.{i}.from: {src!r} is not 'seeds' or an earlier stage ({', '.join(sorted(seen))})"
                    )
            try:
                params = stage.parsed_params()
            except ValidationError as exc:
                raise _nested(exc, f"stages.{i}.params") from None
            model_name = getattr(params, "model", None)
            if model_name is not None and model_name not in self.models:
                raise ValueError(f"stages.{i}.params.model: {model_name!r} is not defined under `models:`")
            seen.add(stage.stage_name)
        return self

    def stage_order(self) -> list[str]:
        return ["seed", *[s.method for s in self.stages]]

    def fingerprint(self) -> str:
        """Hash of everything that decides the output (not of the file's formatting)."""
        payload = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class RecipeError(ValueError):
    pass


class _NestedError(ValueError):
    def __init__(self, prefix: str, errors: list[dict[str, Any]]) -> None:
        self.prefix, self.errors_ = prefix, errors
        super().__init__("; ".join(f"{prefix}.{_loc(e['loc'])}: {e['msg']}" for e in errors))


def _nested(exc: ValidationError, prefix: str) -> _NestedError:
    return _NestedError(prefix, exc.errors())


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after[_stages_consistent(), Recipe]",))


class _UnsetVariableError(ValueError):
    """An unset ``${VAR}``; carries the YAML path so the message can name the line."""

    def __init__(self, path: list[str], name: str) -> None:
        super().__init__(f"environment variable {name} is not set (used as ${{{name}}})")
        self.path = path


def expand_env(value: Any, path: list[str] | None = None) -> Any:
    """``${VAR}`` / ``${VAR:-default}`` in string values, from the environment."""
    path = path or []
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise _UnsetVariableError(path, name)

        return ENV_VAR.sub(sub, value)
    if isinstance(value, list):
        return [expand_env(v, [*path, str(i)]) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: expand_env(v, [*path, str(k)]) for k, v in value.items()}
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark
                )
            if isinstance(key, str | int | float | bool):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _line_of(root: yaml.Node | None, path: list[str]) -> int | None:
    """1-based line of the YAML node at ``path`` (deepest existing prefix)."""
    node, line = root, (root.start_mark.line + 1 if root else None)
    for part in path:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if nxt is None:
                key = next((k for k, _ in node.value if getattr(k, "value", None) == part), None)
                return key.start_mark.line + 1 if key else line
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            nxt = node.value[int(part)]
        else:
            return line
        node, line = nxt, nxt.start_mark.line + 1
    return line


def _error_paths(exc: Exception) -> list[tuple[list[str], str]]:
    if isinstance(exc, ValidationError):
        out = []
        for err in exc.errors():
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, _NestedError):
                for sub in ctx_err.errors_:
                    parts = ctx_err.prefix.split(".") + [str(p) for p in sub["loc"]]
                    out.append((parts, sub["msg"]))
                continue
            msg = err["msg"].removeprefix("Value error, ")
            parts = [str(p) for p in err["loc"]]
            m = re.match(r"^((?:stages|models)\.[\w.]+): (.*)$", msg, re.S)
            if m:
                parts, msg = parts + m.group(1).split("."), m.group(2)
            out.append((parts, msg))
        return out
    return [([], str(exc))]


def parse_recipe(text: str, source: str = "<recipe>", base_dir: Path | None = None) -> Recipe:
    try:
        root = yaml.compose(text)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise RecipeError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a YAML mapping (name:, seeds:, stages: ...)")
    try:
        data = expand_env(data)
    except _UnsetVariableError as exc:
        line = _line_of(root, exc.path)
        where = f"{source}:{line}" if line else source
        raise RecipeError(f"{where}: {'.'.join(exc.path) or '(top)'}: {exc}") from None
    try:
        recipe = Recipe.model_validate(data)
    except (ValidationError, ValueError) as exc:
        lines = []
        for parts, msg in _error_paths(exc):
            line = _line_of(root, parts)
            where = f"{source}:{line}" if line else source
            lines.append(f"{where}: {'.'.join(parts) or '(top)'}: {msg}")
        raise RecipeError("\n".join(lines)) from None
    recipe.base_dir = base_dir
    return recipe


def resolve_recipe_path(path: str | Path) -> Path:
    """A recipe file, or the name of one that ships with mathaug (``quickstart`` → its ``recipes/quickstart.yaml``).

    A file that exists always wins, so a user's own ``quickstart.yaml`` is never shadowed.
    """
    from pipeline.paths import shipped_recipes

    path = Path(path)
    if path.exists():
        return path
    shipped = shipped_recipes()
    name = path.stem if path.suffix in (".yaml", ".yml") else path.name
    if name in shipped and (len(path.parts) == 1 or path.parent == Path("recipes")):
        return shipped[name]
    raise RecipeError(
        f"{path}: recipe file not found (recipes that ship with mathaug: {', '.join(shipped) or 'none'})"
    )


def load_recipe(path: str | Path) -> Recipe:
    path = resolve_recipe_path(path)
    return parse_recipe(path.read_text(encoding="utf-8"), source=str(path), base_dir=path.resolve().parent)
