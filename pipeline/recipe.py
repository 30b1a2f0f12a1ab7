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
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.io.seeds import SeedSpec
from pipeline.stages import get_stage, known_methods

# innermost first, so a default can itself be a variable: ${MATHAUG_STUDENT_MODEL:-${MATHAUG_MODEL:-x}}
ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^${}]*))?\}")


class StageSpec(BaseModel):
    """One generation stage: its method, where its input comes from, its model roles and its parameters."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: str
    name: str | None = Field(None, description="unique stage name (default: the method)")
    from_: list[str] = Field(
        default_factory=lambda: ["seeds"],
        alias="from",
        description="'seeds' or earlier stages; inside rounds, 'X' is X's rows of every round so far and "
        "'X@last' those of the latest round only",
    )
    from_first_round: list[str] | None = Field(
        None, description="inside rounds: the sources of round 1 (e.g. [seeds]) when `from` reads X@last"
    )
    models: dict[str, str] = Field(
        default_factory=dict, description="model role -> name under the recipe's `models:` (teacher, student ...)"
    )
    group: str | None = Field(None, description="the `rounds:` group this stage repeats in (set by the loader)")
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
        return get_stage(self.method).params(**self.params)

    def role_models(self, available: Iterable[str]) -> dict[str, str]:
        """Each model role of the stage -> the recipe model that plays it.

        In order: ``models: {role: name}``; the legacy ``params.model`` for the stage's first role; a recipe
        model named like the role; the model of the stage's first role (one model can play every role); the
        recipe's only model.
        """
        roles = list(get_stage(self.method).roles)
        available = list(available)
        unknown = sorted(set(self.models) - set(roles))
        if unknown:
            raise ValueError(f"models: {unknown} are not roles of {self.method!r} (its roles: {roles or 'none'})")
        legacy = getattr(self.parsed_params(), "model", None)
        out: dict[str, str] = {}
        for i, role in enumerate(roles):
            if role in self.models:
                out[role] = self.models[role]
            elif i == 0 and isinstance(legacy, str):
                out[role] = legacy
            elif role in available:
                out[role] = role
            elif i > 0 and roles[0] in out:
                out[role] = out[roles[0]]
            elif len(available) == 1:
                out[role] = available[0]
            else:
                raise ValueError(
                    f"models: model role {role!r} of {self.method!r} is not mapped: add `models: {{{role}: NAME}}` "
                    f"(recipe models: {available or 'none'})"
                )
            if out[role] not in available:
                raise ValueError(f"models.{role}: {out[role]!r} is not defined under the recipe's `models:`")
        return out


class UntilSpec(BaseModel):
    """When a rounds group stops early (besides ``max_rounds``)."""

    model_config = ConfigDict(extra="forbid")

    no_new_rows: bool = Field(True, description="stop when a round's stages made no row")
    metric: str | None = Field(
        None, description="a funnel counter of the round, 'stage.key' (e.g. llm2llm.student_accuracy)"
    )
    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _bound(self) -> UntilSpec:
        if self.metric and self.at_least is None and self.at_most is None:
            raise ValueError("until.metric needs at_least or at_most")
        return self


class RoundsSpec(BaseModel):
    """A group of stages repeated round after round; each round's rows carry ``round`` in provenance."""

    model_config = ConfigDict(extra="forbid")

    max_rounds: int = Field(3, ge=1, le=1000)
    until: UntilSpec = Field(default_factory=UntilSpec)


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
    max_per_cluster: int = Field(
        1, ge=1, description="distinct questions kept per near-duplicate cluster (raise it to keep entity swaps)"
    )


Preference = Literal["shorter", "longer", "near_target", "executed", "more_votes"]


class DedupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exact: bool = True
    max_solutions_per_question: int = Field(
        4, ge=1, description="distinct verified solutions kept per question (identical solutions count once)"
    )
    prefer: list[Preference] = Field(
        default_factory=list,
        description="which solutions of a question win, after 'verified first': shorter, longer, near_target "
        "(nearest the length target of the row's difficulty tier), executed (verified by running code), more_votes; "
        "then the earlier stage",
    )
    length_targets: dict[str, int] | None = Field(
        None, description="words per difficulty tier for near_target (default: simple 60, moderate 150, highly "
        "complex 300, MATH Level 1-5 60..300, other 120)",
    )
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
    band_low: float = Field(0.70, gt=0, le=1.5, description="with a judge: scores in [band_low, threshold) are asked")
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
    strip_calculator_annotations: bool = Field(
        True, description="remove GSM8K's <<48/2=24>> traces from solutions and messages (kept in solution_raw)"
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
    rounds: dict[str, RoundsSpec] = Field(
        default_factory=dict, description="repeated stage groups by name (YAML: `- rounds: {...}, stages: [...]`)"
    )
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

    @model_validator(mode="before")
    @classmethod
    def _flatten_rounds(cls, data: Any) -> Any:
        """``- rounds: {name: loop, max_rounds: 3}`` with ``stages: [...]`` becomes those stages tagged with
        ``group: loop`` plus ``rounds: {loop: {...}}``: one flat stage list for everything downstream."""
        if not isinstance(data, dict) or not isinstance(data.get("stages"), list):
            return data
        if not any(isinstance(e, dict) and "rounds" in e for e in data["stages"]):
            return data
        flat: list[Any] = []
        rounds = dict(data.get("rounds") or {})
        for i, entry in enumerate(data["stages"]):
            if not (isinstance(entry, dict) and "rounds" in entry):
                flat.append(entry)
                continue
            spec = entry["rounds"]
            spec = {"max_rounds": spec} if isinstance(spec, int) else dict(spec or {})
            name = spec.pop("name", None) or f"rounds{i}"
            extra = sorted(set(entry) - {"rounds", "stages"})
            if extra or not isinstance(entry.get("stages"), list) or not entry["stages"]:
                raise ValueError(f"stages.{i}: a rounds entry has `rounds:` and a non-empty `stages:` list only")
            if name in rounds:
                raise ValueError(f"stages.{i}.rounds: duplicate rounds name {name!r}")
            rounds[name] = spec
            for stage in entry["stages"]:
                flat.append({**stage, "group": name} if isinstance(stage, dict) else stage)
        return {**data, "stages": flat, "rounds": rounds}

    @model_validator(mode="after")
    def _stages_consistent(self) -> Recipe:
        seen: set[str] = {"seeds"}
        groups_done: set[str] = set()
        current: str | None = None
        for i, stage in enumerate(self.stages):
            if stage.stage_name in seen:
                raise ValueError(f"stages.{i}: duplicate stage name {stage.stage_name!r} (set `name:`)")
            if stage.group != current:
                if current is not None:
                    groups_done.add(current)
                if stage.group in groups_done:
                    raise ValueError(f"stages.{i}: the stages of rounds {stage.group!r} must be consecutive")
                current = stage.group
            if stage.group is not None and stage.group not in self.rounds:
                raise ValueError(f"stages.{i}.group: {stage.group!r} is not a rounds group")
            group_members = {s.stage_name for s in self.stages if stage.group and s.group == stage.group}
            for src in [*stage.from_, *(stage.from_first_round or [])]:
                base, _, suffix = src.partition("@")
                if suffix not in ("", "last"):
                    raise ValueError(f"stages.{i}.from: {src!r}: the only suffix is '@last'")
                if base not in seen and base not in group_members:
                    raise ValueError(
                        f"stages.{i}.from: {src!r} is not 'seeds' or an earlier stage "
                        f"({', '.join(sorted(seen | group_members))})"
                    )
            if stage.from_first_round is not None and stage.group is None:
                raise ValueError(f"stages.{i}.from_first_round: only for stages inside rounds")
            try:
                stage.parsed_params()
            except ValidationError as exc:
                raise _nested(exc, f"stages.{i}.params") from None
            try:
                stage.role_models(self.models)
            except ValueError as exc:
                raise ValueError(f"stages.{i}.{exc}") from None
            seen.add(stage.stage_name)
        unused = sorted(set(self.rounds) - {s.group for s in self.stages})
        if unused:
            raise ValueError(f"rounds: {unused} have no stages")
        return self

    def stage_order(self) -> list[str]:
        return ["seed", *[s.method for s in self.stages]]

    def stage(self, name: str) -> StageSpec:
        return next(s for s in self.stages if s.stage_name == name)

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

        expanded = ENV_VAR.sub(sub, value)
        while expanded != value and ENV_VAR.search(expanded):  # a default that was itself a ${VAR}
            value, expanded = expanded, ENV_VAR.sub(sub, expanded)
        return expanded
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
