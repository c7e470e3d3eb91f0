"""Turn run configs and metric values into plain JSON, the form every log file uses.

Configs are chz classes holding builders, dataclasses, pydantic models, enums, paths and
callables; metrics may be numpy or torch scalars. One converter keeps `config.json`,
`metrics.jsonl` and `checkpoints.jsonl` consistent, and makes the config comparison done on
resume (run_dir.py) see exactly what was written.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import Any

import chz

CLASS_KEY = "__class__"
"""Key naming the class of a structured config object, so that two builders with the same
fields but different classes do not look like the same config."""

_ADDRESS_RE = re.compile(r" at 0x[0-9a-fA-F]+")


def qualified_name(obj: Any) -> str:
    """`module.QualName` of a class or function (stable across processes, unlike repr)."""
    module = getattr(obj, "__module__", None) or "?"
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    return f"{module}.{name}"


def to_jsonable(obj: Any) -> Any:
    """A JSON-serialisable copy of `obj`: dicts, lists, str, int, float, bool and None only.

    Structured objects (chz, dataclasses, pydantic) become dicts of their fields plus
    `CLASS_KEY`; numpy/torch scalars and arrays become numbers and lists; classes and functions
    become their qualified names; anything else becomes its repr without memory addresses.
    Non-finite floats are kept (json writes NaN/Infinity, which Python reads back).
    """
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((to_jsonable(v) for v in obj), key=repr)
    if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__")):
        return qualified_name(obj)
    if chz.is_chz(obj):
        fields = {name: getattr(obj, field.logical_name) for name, field in chz.chz_fields(obj).items()}
        return _structured(obj, fields)
    if dataclasses.is_dataclass(obj):
        return _structured(obj, {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    if hasattr(obj, "model_dump") and hasattr(type(obj), "model_fields"):  # pydantic v2
        return _structured(obj, {name: getattr(obj, name) for name in type(obj).model_fields})
    item = _numeric_item(obj)
    if item is not None:
        return item
    return _ADDRESS_RE.sub("", repr(obj))


def _structured(obj: Any, fields: dict[str, Any]) -> dict[str, Any]:
    return {CLASS_KEY: qualified_name(type(obj)), **{k: to_jsonable(v) for k, v in fields.items()}}


def _numeric_item(obj: Any) -> Any:
    """numpy / torch scalars and arrays, recognised by duck typing so torch is never imported."""
    tolist = getattr(obj, "tolist", None)
    if callable(tolist) and hasattr(obj, "dtype"):
        return to_jsonable(tolist())
    item = getattr(obj, "item", None)
    if callable(item) and hasattr(obj, "dtype"):
        return to_jsonable(item())
    return None


def dumps_line(obj: Any) -> str:
    """One compact JSON line (no newline) of `to_jsonable(obj)`."""
    return json.dumps(to_jsonable(obj), separators=(", ", ": "))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write `to_jsonable(obj)` as indented JSON, atomically: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(obj), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
