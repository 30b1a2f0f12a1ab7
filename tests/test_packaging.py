"""A plain (non-editable) install carries the shipped data, prompts and recipes; shipped recipes by name."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.paths import ROOT, shipped_recipes
from pipeline.recipe import RecipeError, load_recipe, resolve_recipe_path

PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mathaug's wheel, built from a copy of the sources (no checkout files beside it)."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "_assets"))
        else:
            shutil.copy2(path, src / name)
    wheels = tmp_path / "wheels"
    built = subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (found,) = wheels.glob("mathaug-*.whl")
    return found


def test_a_wheel_install_builds_the_quickstart_without_a_checkout(wheel: Path, tmp_path: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("pipeline/_assets/recipes/quickstart.yaml", "pipeline/_assets/data/seeds/LICENSE.gsm8k",
                    "pipeline/_assets/data/seeds/gsm8k_train_sample.jsonl", "flows/build.py"):
        assert shipped in names, f"{shipped} missing from {wheel.name}"
    assert not any(name.startswith(("tests/", "bench/")) for name in names)

    target = tmp_path / "site"
    installed = subprocess.run([*PIP, "install", "--no-deps", "--target", str(target), str(wheel)],
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


@pytest.mark.slow
@pytest.mark.timeout(2400)  # a fresh venv's install took over 10 minutes with the cores shared
def test_the_wheel_with_no_extras_in_a_fresh_venv_builds_the_quickstart_through_prefect(
    wheel: Path, tmp_path: Path
) -> None:
    """The path a user takes: `pip install mathaug` (the lock as constraints), no extras, `mathaug build`."""
    import psutil

    from tests.fixtures.faults import cli_env, error_lines

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt"),
         str(wheel)], capture_output=True, text=True, timeout=1200,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    frozen = subprocess.run([str(venv / "bin" / "pip"), "freeze", "--exclude", "mathaug"], capture_output=True,
                            text=True, timeout=300).stdout.split()
    def normal(pin: str) -> str:
        return re.sub(r"[-_.]+", "-", pin.lower())

    locked = {normal(line) for line in (ROOT / "constraints.txt").read_text().split() if "==" in line}
    unlocked = [pin for pin in frozen if normal(pin) not in locked]
    assert not unlocked, f"installed but not pinned in constraints.txt (run `make lock`): {unlocked}"
    probe = "import importlib.util as u; print([m for m in ('torch', 'vllm') if u.find_spec(m)])"
    heavy = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=120)
    assert heavy.stdout.strip() == "[]", heavy.stdout  # the base install pulls neither torch nor vLLM

    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in cli_env(home).items() if k != "PYTHONPATH"}  # the installed copy, not the checkout
    mathaug = str(venv / "bin" / "mathaug")
    version = subprocess.run([mathaug, "--version"], env=env, capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("mathaug "), version.stderr
    done = subprocess.run([mathaug, "build", "quickstart", "-o", "out", "--limit", "20"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Beginning flow run" in done.stderr and "| ERROR" not in done.stderr, done.stderr[-3000:]
    manifest = json.loads((work / "out" / "manifest.json").read_text())
    assert manifest["rows"] > 20 and all((work / "out" / s["path"]).exists() for s in manifest["shards"])
    left = [p for p in psutil.process_iter(["cmdline", "environ"])
            if "uvicorn" in " ".join(p.info["cmdline"] or []) and (p.info["environ"] or {}).get("PREFECT_HOME") == str(home)]
    assert not left, "the temporary Prefect server outlived the build"

    # the real thing, not a simulation: this venv has no vLLM
    refused = subprocess.run([mathaug, "build", "persona", "-o", "persona", "--limit", "4"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and len(error_lines(refused)) == 1, refused.stderr[-3000:]
    assert "backend vllm needs vLLM" in refused.stderr and "mathaug[gpu]" in refused.stderr
    assert not (work / "persona").exists()
