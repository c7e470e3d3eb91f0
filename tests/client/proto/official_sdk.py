"""The official Tinker SDK, as an outside reference for the binary wire tests.

Two versions: 0.24.1, installed in the venv (the `[dev]` extra), and 0.38.0, the newest, which is
installed with `pip install --no-deps --target` into a cache directory outside the repository
(`$COOKBOOK_TINKER038_SITE` names one that is already there). It is never imported into the test
process (two versions of one package cannot share a process): its schema is read from the source
of `tinker_public_pb2.py`, and its converters run in a child process (`official_codec.py`).
"""

from __future__ import annotations

import ast
import base64
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

NEWEST_VERSION = "0.38.0"
SITE_ENV_VAR = "COOKBOOK_TINKER038_SITE"
DEFAULT_SITE = Path.home() / ".cache" / "rlhf-cookbook" / f"tinker-{NEWEST_VERSION}"
_CODEC_SCRIPT = Path(__file__).with_name("official_codec.py")
_PB2 = Path("tinker") / "proto" / "tinker_public_pb2.py"


def installed_site() -> Path:
    """The site-packages directory of the venv's own `tinker` (0.24.1)."""
    spec = importlib.util.find_spec("tinker")
    if spec is None or spec.origin is None:
        raise RuntimeError("the official tinker SDK is not installed (pip install -e '.[dev]')")
    return Path(spec.origin).parent.parent


def install_newest(site: Path) -> Path:
    """`tinker==0.38.0` (its files only, no dependencies) in `site`, installed once."""
    if not (site / f"tinker-{NEWEST_VERSION}.dist-info" / "RECORD").exists():  # pip writes it last
        site.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--upgrade",  # replaces what an interrupted install left
                "--target",
                str(site),
                f"tinker=={NEWEST_VERSION}",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    return site


def file_descriptor(site: Path) -> descriptor_pb2.FileDescriptorProto:
    """The schema a `tinker_public_pb2.py` carries (the bytes protoc serialized into it)."""
    tree = ast.parse((site / _PB2).read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
            and isinstance(node.args[0], ast.Constant)
        ):
            return descriptor_pb2.FileDescriptorProto.FromString(node.args[0].value)
    raise RuntimeError(f"no serialized descriptor in {site / _PB2}")


def run_codec(site: Path, commands: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Commands for the official converters of the SDK in `site`, answered by key (bytes as base64)."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, str(_CODEC_SCRIPT)],
        input=json.dumps(commands),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"official codec failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)
