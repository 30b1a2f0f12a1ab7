"""Ship data/, prompts/ and recipes/ inside the wheel (as ``pipeline/_assets``), so a plain ``pip install`` works.

An editable install reads them from the repository instead (``pipeline/paths.py``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ASSETS = ("data", "prompts", "recipes")
ROOT = Path(__file__).resolve().parent


class BuildPyWithAssets(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "pipeline" / "_assets"
        for name in ASSETS:
            shutil.copytree(ROOT / name, target / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithAssets})
