"""A plain (non-editable) install carries the shipped data, prompts and recipes; shipped recipes by name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.paths import ROOT, shipped_recipes
from pipeline.recipe import RecipeError, load_recipe, resolve_recipe_path

SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "pipeline", "flows", "data", "prompts", "recipes")


def test_shipped_recipes_resolve_by_name_and_a_real_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = shipped_recipes()
    assert {"quickstart", "persona"} <= set(shipped)
    monkeypatch.chdir(tmp_path)  # no recipes/ here
    for spelled in ("quickstart", "quickstart.yaml", "recipes/quickstart.yaml"):
        assert resolve_recipe_path(spelled) == shipped["quickstart"]
    assert load_recipe("quickstart").name == "quickstart"

    own = tmp_path / "quickstart.yaml"  # the user's own file of the same name is never shadowed
    own.write_text((ROOT / "recipes" / "quickstart.yaml").read_text().replace("name: quickstart", "name: mine"))
    assert load_recipe("quickstart.yaml").name == "mine"

    with pytest.raises(RecipeError, match=r"nope: recipe file not found \(recipes that ship with mathaug: .*quickstart"):
        load_recipe("nope")
    with pytest.raises(RecipeError, match="not found"):
        resolve_recipe_path("elsewhere/persona.yaml")  # a path to another folder is not a shipped name


def test_a_wheel_install_builds_the_quickstart_without_a_checkout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "_assets"))
        else:
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    wheels = tmp_path / "wheels"
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("mathaug-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("pipeline/_assets/recipes/quickstart.yaml", "pipeline/_assets/data/seeds/LICENSE.gsm8k",
                    "pipeline/_assets/data/seeds/gsm8k_train_sample.jsonl", "flows/build.py"):
        assert shipped in names, f"{shipped} missing from {wheel.name}"
    assert not any(name.startswith(("tests/", "bench/")) for name in names)

    target = tmp_path / "site"
    installed = subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]

    # run from an empty directory with the installed copy first on the path: no checkout to lean on
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "COLUMNS": "200"}
    where = subprocess.run([sys.executable, "-c", "import pipeline.paths as p; print(p.ROOT)"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=120)
    assert where.stdout.strip() == str(target / "pipeline" / "_assets"), where.stderr
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "build", "quickstart", "-o", "out", "--limit", "20", "--direct"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((work / "out" / "manifest.json").read_text())
    assert manifest["rows"] > 20 and all((work / "out" / s["path"]).exists() for s in manifest["shards"])
