"""Prompt templates: versioned YAML files under ``prompts/`` rendered with jinja2.

A template is ``prompts/<stage>/<name>.v<N>.yaml`` with a ``user`` part (required), an optional ``system`` part
and an optional ``description``. It is referred to as ``<stage>/<name>.v<N>`` (or by a file path, for users' own
templates). Its ``sha256`` (of the file bytes) goes into the request-cache key and into each row's
``generator.template_hash``: editing a template re-sends only the requests it renders.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from pipeline.paths import PROMPTS_DIR

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)


class TemplateError(ValueError):
    """A template file that is missing, malformed, or rendered with missing variables."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    path: Path
    sha256: str
    user: str
    system: str | None = None
    description: str = ""
    _compiled: dict[str, jinja2.Template] = field(default_factory=dict, compare=False, repr=False)

    def render(self, **variables: Any) -> list[dict[str, str]]:
        """The chat messages for ``variables``; a variable the template uses but is not given is an error."""
        messages = []
        for role in ("system", "user"):
            if getattr(self, role) is None:
                continue
            try:
                text = self._compiled[role].render(**variables)
            except jinja2.UndefinedError as exc:
                raise TemplateError(f"template {self.name} ({role} part): {exc.message}") from None
            messages.append({"role": role, "content": text.strip()})
        return messages


def _resolve(ref: str, prompts_dir: Path) -> tuple[str, Path]:
    as_path = Path(ref)
    if as_path.suffix in (".yaml", ".yml") and as_path.is_file():
        return as_path.stem, as_path.resolve()
    candidate = prompts_dir / f"{ref}.yaml"
    if candidate.is_file():
        return ref, candidate
    known = sorted(str(p.relative_to(prompts_dir))[: -len(".yaml")] for p in prompts_dir.rglob("*.yaml"))
    raise TemplateError(f"no prompt template {ref!r} (looked for {candidate}); known templates: {known}")


@lru_cache(maxsize=256)
def _load(name: str, path: Path, sha: str) -> PromptTemplate:
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except yaml.YAMLError as exc:
        raise TemplateError(f"template {path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("user"), str):
        raise TemplateError(
            f"template {path}: needs a 'user' string (and optionally 'system', 'description')"
        )
    unknown = set(data) - {"user", "system", "description"}
    if unknown:
        raise TemplateError(f"template {path}: unknown keys {sorted(unknown)}")
    compiled = {}
    for role in ("system", "user"):
        if data.get(role) is not None:
            try:
                compiled[role] = _ENV.from_string(data[role])
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(f"template {path} ({role} part): {exc}") from None
    return PromptTemplate(
        name=name,
        path=path,
        sha256=sha,
        user=data["user"],
        system=data.get("system"),
        description=data.get("description") or "",
        _compiled=compiled,
    )


def load_template(ref: str, prompts_dir: Path = PROMPTS_DIR) -> PromptTemplate:
    """Load ``<stage>/<name>.v<N>`` from ``prompts_dir`` (or a YAML file path); re-read when the file changed."""
    name, path = _resolve(ref, Path(prompts_dir))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return _load(name, path, sha)
