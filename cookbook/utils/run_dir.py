"""A run's log directory: start it, resume it, or refuse to mix two runs in it.

Recipes are re-run with the same `log_path` to resume (DESIGN.md), so the directory must tell
"the same run again" from "another run pointed at the same place". The config saved in
`config.json` decides, ignoring keys that legitimately change between invocations of one run
(max_steps, log_path, base_url, wandb_*, eval/save intervals, the exists-behaviour itself).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal, get_args

from cookbook.utils.checkpoints import CHECKPOINTS_FILE
from cookbook.utils.jsonable import to_jsonable, write_json
from cookbook.utils.ml_log import CONFIG_FILE, METRICS_FILE

logger = logging.getLogger(__name__)

BehaviorIfExists = Literal["resume", "overwrite", "raise"]
BEHAVIORS: tuple[str, ...] = get_args(BehaviorIfExists)
DEFAULT_IGNORE_KEYS: tuple[str, ...] = (
    "max_steps",
    "log_path",
    "base_url",
    "wandb_*",
    "eval_every",
    "save_every",
    "behavior_if_exists",
    "behavior_if_log_dir_exists",
)
"""Glob patterns of config keys that may change when the same run is re-invoked. A pattern
matches a key at any depth (`log_path` also ignores `sft.log_path`) or a full dotted path."""

RUN_MARKERS: tuple[str, ...] = (CONFIG_FILE, METRICS_FILE, CHECKPOINTS_FILE)
_MISSING: Any = object()
_VALUE_CHARS = 60


class RunDirError(ValueError):
    """The log directory cannot be used for this run as asked."""


def _as_config_dict(config: Any) -> dict[str, Any]:
    """The config exactly as config.json will hold it (JSON round trip: tuples become lists...)."""
    data = json.loads(json.dumps(to_jsonable(config)))
    if not isinstance(data, dict):
        raise TypeError(f"config must be a mapping or a config object, got {type(config).__name__}")
    return data


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def _ignored(path: str, patterns: Iterable[str]) -> bool:
    parts = path.split(".")
    return any(fnmatchcase(path, p) or any(fnmatchcase(part, p) for part in parts) for p in patterns)


def _short(value: Any) -> str:
    if value is _MISSING:
        return "<missing>"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."


def config_differences(
    old: Mapping[str, Any], new: Mapping[str, Any], ignore_keys: Iterable[str] = DEFAULT_IGNORE_KEYS
) -> list[str]:
    """`key: old -> new` for every (dotted) key whose value differs, ignoring `ignore_keys`."""
    patterns = tuple(ignore_keys)
    flat_old, flat_new = _flatten(old), _flatten(new)
    diffs = []
    for key in list(flat_old) + [k for k in flat_new if k not in flat_old]:
        if _ignored(key, patterns):
            continue
        before, after = flat_old.get(key, _MISSING), flat_new.get(key, _MISSING)
        if (
            before is _MISSING
            or after is _MISSING
            or json.dumps(before, sort_keys=True) != json.dumps(after, sort_keys=True)
        ):
            diffs.append(f"{key}: {_short(before)} -> {_short(after)}")
    return diffs


def _clear(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def prepare_log_dir(
    log_path: str | os.PathLike[str],
    config: Any,
    behavior_if_exists: BehaviorIfExists = "resume",
    ignore_keys: Iterable[str] = DEFAULT_IGNORE_KEYS,
) -> bool:
    """Make `log_path` ready for this run; True when it continues a run already there.

    - missing or empty: created, config.json written -> False;
    - holds a run with an equal config (up to `ignore_keys`): config.json refreshed -> True
      (with "resume"), refused (with "raise");
    - holds another run: refused with the differing keys, or wiped first with "overwrite" -> False;
    - holds files that are not a run: always refused (nothing is deleted that we did not write).
    Whether the run already finished is for the caller to check (a "final" checkpoint record).
    """
    if behavior_if_exists not in BEHAVIORS:
        raise ValueError(f"behavior_if_exists must be one of {BEHAVIORS}, got {behavior_if_exists!r}")
    path = Path(log_path)
    new_config = _as_config_dict(config)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"log_path {path} exists and is not a directory")
    if not path.exists() or not any(path.iterdir()):
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / CONFIG_FILE, new_config)
        return False
    if not any((path / marker).exists() for marker in RUN_MARKERS):
        raise RunDirError(
            f"log_path {path} is not empty and holds no run (none of {RUN_MARKERS}); "
            f"refusing to write into or delete it: choose another log_path"
        )
    if behavior_if_exists == "overwrite":
        logger.warning("behavior_if_exists='overwrite': deleting the previous run in %s", path)
        _clear(path)
        write_json(path / CONFIG_FILE, new_config)
        return False
    if behavior_if_exists == "raise":
        raise RunDirError(
            f"log_path {path} already holds a run and behavior_if_exists='raise'; "
            f"use behavior_if_exists='resume' to continue it or 'overwrite' to replace it"
        )
    old_config = _read_config(path / CONFIG_FILE)
    diffs = config_differences(old_config, new_config, ignore_keys)
    if diffs:
        raise RunDirError(
            f"log_path {path} holds a different run ({len(diffs)} config key(s) differ: "
            + "; ".join(diffs)
            + "). Use another log_path, or behavior_if_exists='overwrite' to delete that run."
        )
    write_json(path / CONFIG_FILE, new_config)
    logger.info("resuming the run in %s", path)
    return True


def _read_config(config_path: Path) -> dict[str, Any]:
    if not config_path.exists():
        raise RunDirError(
            f"{config_path.parent} holds run files but no {CONFIG_FILE}, so it cannot be "
            f"checked to be the same run; use another log_path or behavior_if_exists='overwrite'"
        )
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise RunDirError(
            f"{config_path} is not valid JSON ({e}); use another log_path or behavior_if_exists='overwrite'"
        ) from e
    if not isinstance(data, dict):
        raise RunDirError(f"{config_path} does not hold a JSON object")
    return data
