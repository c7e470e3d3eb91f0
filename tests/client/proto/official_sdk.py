"""The official Tinker SDK, as an outside reference for the binary wire tests.

Two versions: 0.24.1 (this venv's, the `[dev]` extra) and 0.38.0, the newest, in the pinned
environment of tests/official_sdk/sdk_environments.py (made on first use). Neither is imported into
the test process: a schema is read from the source of `tinker_public_pb2.py`, and the converters
run in that version's own interpreter (`official_codec.py`).
"""

from __future__ import annotations

import ast
import base64
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

from tests.official_sdk.sdk_environments import sdk_env, sdk_python

INSTALLED_VERSION = "0.24.1"
NEWEST_VERSION = "0.38.0"
_CODEC_SCRIPT = Path(__file__).with_name("official_codec.py")
_PB2 = Path("tinker") / "proto" / "tinker_public_pb2.py"


@dataclass(frozen=True)
class OfficialSdk:
    """One official SDK version: an interpreter that imports it, and the directory it is installed in."""

    python: Path
    site: Path


def official_sdk(version: str) -> OfficialSdk:
    python = sdk_python(version)
    where = "import pathlib, tinker; print(pathlib.Path(tinker.__file__).parent.parent)"
    found = subprocess.run(
        [str(python), "-c", where], env=sdk_env(), capture_output=True, text=True, check=True
    )
    return OfficialSdk(python=python, site=Path(found.stdout.strip()))


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


def run_codec(sdk: OfficialSdk, commands: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Commands for the official converters of `sdk`, answered by key (bytes as base64)."""
    done = subprocess.run(
        [str(sdk.python), str(_CODEC_SCRIPT)],
        input=json.dumps(commands),
        capture_output=True,
        text=True,
        env=sdk_env(),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"official codec failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)
