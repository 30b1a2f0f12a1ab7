"""The one place model-written code runs: `Sandbox(SandboxConfig(...)).run(code, session)` -> `ExecResult`.

What is enforced, how, and what is not: docs/sandbox.md.
"""

from pipeline.sandbox.pool import ExecResult, Sandbox, SandboxConfig, SandboxError

__all__ = ["ExecResult", "Sandbox", "SandboxConfig", "SandboxError"]
