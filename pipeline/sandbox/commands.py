"""``mathaug sandbox run FILE.py``: run one snippet exactly as the code_tir stage would, print one JSON line.

So anyone can probe the boundary from outside: ``mathaug sandbox run evil.py`` prints
``{"status": "ok" | "error" | "timeout" | "killed", "output": ..., "seconds": ...}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipeline.sandbox.pool import Sandbox, SandboxConfig


def run_file(
    file: Annotated[
        Path, typer.Argument(help="a Python file to run in the sandbox", exists=True, dir_okay=False)
    ],
    timeout_s: Annotated[
        float | None, typer.Option("--timeout", help="wall-clock seconds (default 5)")
    ] = None,
    memory_mb: Annotated[int | None, typer.Option("--memory-mb", help="address-space limit in MiB")] = None,
    max_output_chars: Annotated[
        int | None, typer.Option("--max-output-chars", help="output length cap")
    ] = None,
) -> None:
    """Run FILE in the sandbox and print {"status", "output", "seconds"} as one JSON line."""
    overrides = {"timeout_s": timeout_s, "memory_mb": memory_mb, "max_output_chars": max_output_chars}
    config = SandboxConfig(workers=1, **{k: v for k, v in overrides.items() if v is not None})
    with Sandbox(config) as sandbox:
        result = sandbox.run(file.read_text(encoding="utf-8", errors="replace"))
    typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))


def register(app: typer.Typer) -> None:
    """Add ``sandbox run`` to the ``mathaug`` app."""
    sandbox_app = typer.Typer(no_args_is_help=True, help="The code sandbox of the code_tir stage.")
    sandbox_app.command("run")(run_file)
    app.add_typer(sandbox_app, name="sandbox")
