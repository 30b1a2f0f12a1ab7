"""Everything a build can check before it starts Prefect or writes a byte: a failed start leaves nothing behind.

The output directory (a file, unwritable, someone else's, another recipe's run), every seed row (the same load
the build does, so a bad byte fails here in about a second, not after the 10-20 s server start), the task
runner's package, and each model a stage uses: an OpenAI-compatible server must answer ``GET {base_url}/models``
within ``MODEL_CHECK_TIMEOUT_S`` and serve the configured name; the vllm backend must import.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import time
from pathlib import Path
from typing import Any

from pipeline.io.rundir import BuildError, check_run_dir
from pipeline.io.seeds import LoadReport
from pipeline.recipe import Recipe

MODEL_CHECK_TIMEOUT_S = 10.0  # connect + answer; an unreachable server fails the build within this
RUNNER_PACKAGES = {"dask": "prefect_dask", "ray": "prefect_ray"}


class PreflightError(BuildError):
    """Something the build would fail on later, found before it started."""


def preflight(
    recipe: Recipe,
    out_dir: Path,
    *,
    limit: int | None = None,
    fresh: bool = False,
    resume: bool = True,
    skip_bad_rows: bool = False,
) -> LoadReport:
    """Raise (``BuildError``, ``SeedError``) on anything that would stop the build; read-only. Returns the seed
    load report (rows loaded and skipped)."""
    from pipeline.build import load_seed_records

    check_run_dir(recipe, out_dir, limit, fresh=fresh, resume=resume)
    report = LoadReport()
    load_seed_records(recipe, limit=limit, skip_bad_rows=skip_bad_rows, report=report)
    runner = RUNNER_PACKAGES.get(recipe.orchestration.task_runner)
    if runner and importlib.util.find_spec(runner) is None:
        raise PreflightError(
            f"orchestration.task_runner: {recipe.orchestration.task_runner} needs {runner.replace('_', '-')} "
            "(pip install 'mathaug[scale]')"
        )
    for name in sorted(models_in_use(recipe)):
        check_model(name, recipe.models[name])
    return report


def models_in_use(recipe: Recipe) -> set[str]:
    """Names under ``models:`` that some stage uses."""
    used: set[str] = set()
    for stage in recipe.stages:
        role_models = getattr(stage, "role_models", None)
        if role_models is not None:
            used |= set(role_models(recipe.models).values())
            continue
        model = getattr(stage.parsed_params(), "model", None)
        if isinstance(model, str):
            used.add(model)
    return used & set(recipe.models)


def check_model(name: str, config: Any) -> None:
    if config.backend == "vllm":
        try:
            importlib.import_module("vllm")
        except ImportError as exc:
            raise PreflightError(
                f"models.{name}: backend vllm needs vLLM, which does not import here ({exc}); install "
                "mathaug[gpu] on a CUDA machine (pip install 'mathaug[gpu]') or mathaug[cpu] for CPU only"
            ) from None
        return
    if config.backend == "openai":
        check_openai_server(name, config.base_url, config.model, config.api_key_env)


def check_openai_server(name: str, base_url: str, model: str, api_key_env: str | None) -> None:
    """``GET {base_url}/models``: the server answers, takes the key, and serves ``model``."""
    import httpx

    url = base_url.rstrip("/") + "/models"
    headers = {}
    if api_key_env and os.environ.get(api_key_env):
        headers["Authorization"] = f"Bearer {os.environ[api_key_env]}"
    started = time.monotonic()
    try:
        response = httpx.get(url, headers=headers, timeout=httpx.Timeout(MODEL_CHECK_TIMEOUT_S, connect=5.0))
    except httpx.ReadTimeout:
        # the server took the connection but is busy (llama.cpp serves one request at a time): it is there, and
        # the build's own requests wait with their timeouts and retries; only a server that is not there fails
        return
    except httpx.HTTPError as exc:
        raise PreflightError(
            f"models.{name}: no answer from {url} after {time.monotonic() - started:.1f}s "
            f"({type(exc).__name__}: {exc or 'no detail'}); tried GET /models once. Start the server or fix "
            "base_url in the recipe"
        ) from None
    if response.status_code in (401, 403):
        hint = f"set {api_key_env}" if api_key_env else "set api_key_env in the recipe"
        raise PreflightError(f"models.{name}: {url} refused the API key (HTTP {response.status_code}); {hint}")
    if response.status_code == 404:  # a server without the listing: the first request will tell
        return
    if response.status_code != 200:
        raise PreflightError(f"models.{name}: GET {url} answered HTTP {response.status_code}")
    try:
        served = [str(item["id"]) for item in response.json().get("data", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        return
    if served and model not in served:
        raise PreflightError(
            f"models.{name}: {base_url} does not serve {model!r}; it serves: {', '.join(served[:20])}"
        )
