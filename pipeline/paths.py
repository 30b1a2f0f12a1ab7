"""Where the shipped data, prompts and recipes live (the repository root; installs are editable)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "data"
PROMPTS_DIR = ROOT / "prompts"
RECIPES_DIR = ROOT / "recipes"
