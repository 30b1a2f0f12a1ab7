"""Shared fixtures live in tests/fixtures/*.py; this file only imports them."""

# first: it points Prefect at a private PREFECT_HOME before anything imports prefect
from tests.fixtures.prefect import (  # noqa: F401, I001
    prefect_server,
    prefect_subprocess_env,
    scheduler_server,
)
from tests.fixtures.llm_fixtures import (  # noqa: F401
    scripted_server,
    tiny_model_dir,
    tiny_server,
    tiny_vllm_models,
    vllm_session_env,
)
