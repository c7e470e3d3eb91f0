"""Run a recipe the way a user does: `python -m <module> key=value ...` in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# Variables that would point a recipe at some other server or change its console output.
_SCRUBBED_ENV = (
    "COOKBOOK_BASE_URL",
    "TINKER_BASE_URL",
    "COOKBOOK_API_KEY",
    "TINKER_API_KEY",
    "COOKBOOK_PROGRESS",
)


def recipe_env(server_storage: Path | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment minus server/API settings; a private storage dir for a bundled server."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    if server_storage is not None:
        env["COOKBOOK_SERVER_STORAGE"] = str(server_storage)
    env.update(extra or {})
    return env


def recipe_command(module: str, args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run_recipe(
    module: str,
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run to completion; a non-zero exit fails with the end of the recipe's output."""
    done = subprocess.run(
        recipe_command(module, args),
        env=dict(env or recipe_env()),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-40:])
        raise AssertionError(f"{module} {' '.join(args)} exited with {done.returncode}; last lines:\n{tail}")
    return done
