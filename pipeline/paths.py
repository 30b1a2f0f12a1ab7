"""Where the shipped data, prompts and recipes live.

From a checkout (or an editable install) they are the repository's own folders; a wheel carries copies in
``pipeline/_assets`` (``setup.py``), so a plain ``pip install`` needs no checkout.
"""

from __future__ import annotations

from pathlib import Path

ASSET_DIRS = ("data", "prompts", "recipes")


def _asset_root() -> Path:
    repo = Path(__file__).resolve().parents[1]
    if all((repo / name).is_dir() for name in ASSET_DIRS):
        return repo
    return Path(__file__).resolve().parent / "_assets"


ROOT = _asset_root()
DATA_DIR = ROOT / "data"
PROMPTS_DIR = ROOT / "prompts"
RECIPES_DIR = ROOT / "recipes"


def shipped_recipes() -> dict[str, Path]:
    """Recipes that ship with mathaug, by name (``quickstart``, ``persona``, ...)."""
    return {path.stem: path for path in sorted(RECIPES_DIR.glob("*.yaml"))}
