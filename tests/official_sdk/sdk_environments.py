"""Where each tested version of the official `tinker` SDK lives: an interpreter that imports it.

0.24.1 is pyproject's dev extra, so it is this interpreter. Any other version gets a virtual
environment of its own under ~/.cache/rlhf-cookbook, made on first use from the pinned files at
the repository root and remade when those files change; the first test that needs one waits for
pip (a minute or two).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.shared_cache import cache_dir, exclusive

REPO_ROOT = Path(__file__).resolve().parents[2]
# The official SDK refuses a key that does not start with "tml-".
API_KEY = "tml-local"


@dataclass(frozen=True)
class SdkEnvironment:
    """An environment with one official SDK version (and, for 0.38, the official cookbook)."""

    version: str
    requirements: Path | None = None  # None: the SDK is in this interpreter's environment
    constraints: Path | None = None
    no_deps: tuple[str, ...] = ()  # installed after the requirements, without their declared dependencies


SDK_ENVIRONMENTS: dict[str, SdkEnvironment] = {
    env.version: env
    for env in (
        SdkEnvironment("0.24.1"),
        SdkEnvironment(
            "0.38.0",
            requirements=REPO_ROOT / "requirements-tinker-0.38.txt",
            constraints=REPO_ROOT / "constraints-tinker-0.38.txt",
            no_deps=("tinker-cookbook==0.6.1",),
        ),
    )
}


def sdk_env() -> dict[str, str]:
    """The environment of an official SDK's process: no telemetry, and none of this project on its path."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TINKER_TELEMETRY"] = "0"
    return env


def sdk_python(version: str) -> Path:
    """An interpreter whose `import tinker` is that version, making its environment if needed."""
    env = SDK_ENVIRONMENTS[version]
    if env.requirements is None:
        installed = importlib.metadata.version("tinker")
        if installed != version:
            raise RuntimeError(
                f"this environment has tinker {installed}, expected {version} (pyproject's dev extra)"
            )
        return Path(sys.executable)
    return _ensure_venv(env, cache_dir() / f"venv-tinker-{version}")


def _recipe(env: SdkEnvironment) -> str:
    """Everything the environment is made from; a change to any of it remakes the environment."""
    assert env.requirements is not None and env.constraints is not None
    parts = [
        sys.base_prefix,
        sys.version,
        env.requirements.read_text(),
        env.constraints.read_text(),
        *env.no_deps,
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _ensure_venv(env: SdkEnvironment, venv: Path) -> Path:
    python = venv / "bin" / "python"
    stamp = venv / "made-from.sha256"
    recipe = _recipe(env)
    with exclusive(venv.with_name(venv.name + ".lock")):
        if stamp.is_file() and stamp.read_text() == recipe:
            return python
        shutil.rmtree(venv, ignore_errors=True)
        log = venv.with_name(venv.name + ".log")
        with open(log, "w") as out:
            steps = [
                [sys.executable, "-m", "venv", str(venv)],
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "-c",
                    str(env.constraints),
                    "-r",
                    str(env.requirements),
                ],
            ]
            if env.no_deps:
                steps.append(
                    [
                        str(python),
                        "-m",
                        "pip",
                        "install",
                        "--no-deps",
                        "-c",
                        str(env.constraints),
                        *env.no_deps,
                    ]
                )
            for step in steps:
                out.write(f"$ {' '.join(step)}\n")
                out.flush()
                if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                    raise RuntimeError(
                        f"making the tinker {env.version} environment failed at {' '.join(step)}; "
                        f"end of {log}:\n{log.read_text()[-3000:]}"
                    )
        stamp.write_text(recipe)
    return python
