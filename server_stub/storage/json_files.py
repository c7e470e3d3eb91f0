"""Small JSON files written atomically (temp file + rename), so a reader never sees half a file."""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from pathlib import Path
from typing import Any, TypeVar

from server_stub.models.lora_hub import LoraSpec

T = TypeVar("T")


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> dict[str, Any] | None:
    """The object in `path`, or None if it is missing or unreadable (a crash mid-write elsewhere)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def metadata_to_json(meta: Any) -> dict[str, Any]:
    """A run/checkpoint metadata dataclass as JSON; `is_lora` is spelled out for human readers."""
    return {**dataclasses.asdict(meta), "is_lora": meta.lora is not None}


def metadata_from_json(cls: type[T], payload: dict[str, Any]) -> T | None:
    """The dataclass back from `metadata_to_json` output (unknown keys ignored); None if it does not fit."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in payload.items() if k in names}
    try:
        values["lora"] = LoraSpec.from_dict(payload.get("lora"))
        return cls(**values)
    except TypeError:
        return None
