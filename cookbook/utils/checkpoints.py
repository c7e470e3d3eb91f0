"""Checkpoints of a training loop, and the `checkpoints.jsonl` index that resumes it.

Each save writes the server-side checkpoint(s) first and appends one line to
`<log_path>/checkpoints.jsonl` only once they exist, so the index never points at a checkpoint
that failed. A line holds the checkpoint's name, its paths, and the loop's position (`batch`,
`epoch`, anything else the loop needs); `get_last_checkpoint` is what every trainer calls to
resume.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from cookbook.client.types import SAFE_NAME_RE
from cookbook.utils.jsonable import to_jsonable
from cookbook.utils.jsonl import append_jsonl, read_jsonl

if TYPE_CHECKING:
    from cookbook.client.abstract import TrainingClient

logger = logging.getLogger(__name__)

CHECKPOINTS_FILE = "checkpoints.jsonl"
FINAL_NAME = "final"
CheckpointKind = Literal["state", "sampler", "both"]
_KINDS: tuple[str, ...] = get_args(CheckpointKind)
_RESERVED_KEYS = ("name", "state_path", "sampler_path")


@dataclass
class CheckpointRecord:
    """One line of checkpoints.jsonl. Keys the loop added beyond the known ones live in `extra`."""

    name: str
    batch: int | None = None
    epoch: int | None = None
    final: bool = False
    state_path: str | None = None
    sampler_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckpointRecord:
        """Parse a line; ValueError naming the field when one has the wrong type."""
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"checkpoint record needs a non-empty string 'name', got {d!r}")
        for key in ("batch", "epoch"):
            value = d.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"checkpoint {name!r}: {key!r} must be an int, got {value!r}")
        for key in ("state_path", "sampler_path"):
            value = d.get(key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"checkpoint {name!r}: {key!r} must be a string, got {value!r}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(
            name=name,
            batch=d.get("batch"),
            epoch=d.get("epoch"),
            final=bool(d.get("final", name == FINAL_NAME)),
            state_path=d.get("state_path"),
            sampler_path=d.get("sampler_path"),
            extra={k: v for k, v in d.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """The line as written: known fields that are set, then the extra keys."""
        out: dict[str, Any] = {"name": self.name}
        for key in ("batch", "epoch", "state_path", "sampler_path"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.final:
            out["final"] = True
        return {**out, **self.extra}

    def get(self, key: str) -> Any:
        """A known field or an extra key by name (None when absent)."""
        return self.to_dict().get(key)


def checkpoints_path(log_path: str | os.PathLike[str]) -> Path:
    return Path(log_path) / CHECKPOINTS_FILE


def load_checkpoints_file(log_path: str | os.PathLike[str]) -> list[CheckpointRecord]:
    """Every record in `<log_path>/checkpoints.jsonl`, oldest first ([] when there is none).

    A partial last line left by a killed process is ignored; a broken line before it raises.
    """
    path = checkpoints_path(log_path)
    records = []
    for i, row in enumerate(read_jsonl(path), start=1):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: record {i} is not a JSON object: {row!r}")
        records.append(CheckpointRecord.from_dict(row))
    return records


def get_last_checkpoint(
    log_path: str | os.PathLike[str], required_key: str = "state_path"
) -> CheckpointRecord | None:
    """The newest record that has `required_key` (default: a resumable training state), or None."""
    for record in reversed(load_checkpoints_file(log_path)):
        if record.get(required_key) is not None:
            logger.info(
                "found checkpoint %r in %s (%s=%s)",
                record.name,
                log_path,
                required_key,
                record.get(required_key),
            )
            return record
    logger.info("no checkpoint with %r in %s", required_key, log_path)
    return None


def _validate(name: str, loop_state: Mapping[str, Any], kind: str, ttl_seconds: int | None) -> None:
    if not isinstance(name, str) or not SAFE_NAME_RE.match(name) or ".." in name:
        raise ValueError(
            f"invalid checkpoint name {name!r}: use letters, digits and _.:=- "
            f"(at most 128 characters, not starting with '.' or '-')"
        )
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if ttl_seconds is not None and (
        isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0
    ):
        raise ValueError(f"ttl_seconds must be a positive int or None, got {ttl_seconds!r}")
    if not isinstance(loop_state, Mapping):
        raise TypeError(f"loop_state must be a dict, got {type(loop_state).__name__}")
    reserved = [k for k in _RESERVED_KEYS if k in loop_state]
    if reserved:
        raise ValueError(f"loop_state may not set {reserved}: save_checkpoint fills them in")
    # Fail before saving anything rather than after: the record must parse when resuming.
    CheckpointRecord.from_dict({"name": name, **to_jsonable(dict(loop_state))})


def _record_saved(
    log_path: str | os.PathLike[str], name: str, loop_state: Mapping[str, Any], paths: dict[str, str]
) -> None:
    line = {"name": name, **to_jsonable(dict(loop_state)), **paths}
    if name == FINAL_NAME:
        line.setdefault("final", True)
    append_jsonl(checkpoints_path(log_path), line)
    logger.info("saved checkpoint %r: %s", name, paths)


def save_checkpoint(
    training_client: TrainingClient,
    name: str,
    log_path: str | os.PathLike[str],
    loop_state: Mapping[str, Any],
    kind: CheckpointKind = "state",
    ttl_seconds: int | None = None,
) -> dict[str, str]:
    """Save the training state and/or sampler weights as `name`, then record them.

    Returns `{"state_path": ..., "sampler_path": ...}` (the kinds saved). Both saves are
    submitted before waiting, so they run back to back on the server.
    """
    _validate(name, loop_state, kind, ttl_seconds)
    futures = {}
    if kind in ("state", "both"):
        futures["state_path"] = training_client.save_state(name, ttl_seconds=ttl_seconds)
    if kind in ("sampler", "both"):
        futures["sampler_path"] = training_client.save_weights_for_sampler(name, ttl_seconds=ttl_seconds)
    paths = {key: fut.result().path for key, fut in futures.items()}
    _record_saved(log_path, name, loop_state, paths)
    return paths


async def save_checkpoint_async(
    training_client: TrainingClient,
    name: str,
    log_path: str | os.PathLike[str],
    loop_state: Mapping[str, Any],
    kind: CheckpointKind = "state",
    ttl_seconds: int | None = None,
) -> dict[str, str]:
    """`save_checkpoint` for async loops: awaits the saves instead of blocking the event loop."""
    _validate(name, loop_state, kind, ttl_seconds)
    futures = {}
    if kind in ("state", "both"):
        futures["state_path"] = await training_client.save_state_async(name, ttl_seconds=ttl_seconds)
    if kind in ("sampler", "both"):
        futures["sampler_path"] = await training_client.save_weights_for_sampler_async(
            name, ttl_seconds=ttl_seconds
        )
    paths = {key: (await fut).path for key, fut in futures.items()}
    _record_saved(log_path, name, loop_state, paths)
    return paths
