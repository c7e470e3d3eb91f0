"""Append-only JSON-lines files that survive a killed process.

`metrics.jsonl` and `checkpoints.jsonl` are appended one line per event and read back on
resume and for plots. A process killed mid-write leaves at most a partial last line: readers
skip it, and writers first repair the file so that the next line does not get glued onto it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from cookbook.utils.jsonable import dumps_line

logger = logging.getLogger(__name__)

_TAIL_CHUNK = 1 << 16


def repair_partial_tail(path: str | os.PathLike[str]) -> None:
    """Make the file end with a newline: complete a valid last line, cut off a partial one."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        start = _start_of_last_line(f, size)
        f.seek(start)
        tail = f.read()
        if _parses(tail):
            f.write(b"\n")
            return
        logger.warning(
            "%s: dropping a partial last line (%d bytes) left by an interrupted write", path, len(tail)
        )
        f.truncate(start)


def _start_of_last_line(f: IO[bytes], size: int) -> int:
    """Offset just after the last newline (0 when the file has none), reading backwards."""
    end = size
    while end > 0:
        begin = max(0, end - _TAIL_CHUNK)
        f.seek(begin)
        chunk = f.read(end - begin)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return begin + cut + 1
        end = begin
    return 0


def _parses(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def open_for_append(path: str | os.PathLike[str]) -> IO[str]:
    """Open a JSONL file for appending lines (creating it and its directory, repairing its tail)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_partial_tail(path)
    return path.open("a", encoding="utf-8")


def write_line(f: IO[str], obj: Any) -> None:
    """Write one JSON line and flush it, so that it is on disk even if the process is killed next."""
    f.write(dumps_line(obj) + "\n")
    f.flush()


def append_jsonl(path: str | os.PathLike[str], obj: Any) -> None:
    """Append one JSON line to `path` (for files written rarely, e.g. one line per checkpoint)."""
    with open_for_append(path) as f:
        write_line(f, obj)


def read_jsonl(path: str | os.PathLike[str], *, skip_invalid: bool = False) -> list[Any]:
    """Every JSON value in the file, in order; [] when it does not exist.

    A partial last line (a killed writer) is skipped with a warning. A broken line elsewhere is
    corruption: ValueError naming the line, unless `skip_invalid` (for best-effort readers
    such as plotting).
    """
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    ends_cleanly = raw.endswith(b"\n")
    out: list[Any] = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as e:
            is_tail = i == len(lines) and not ends_cleanly
            if is_tail:
                logger.warning("%s: ignoring a partial last line (%d bytes)", path, len(line))
            elif skip_invalid:
                logger.warning("%s:%d: skipping an invalid JSON line: %s", path, i, e)
            else:
                raise ValueError(f"{path}:{i}: invalid JSON line ({e}); the file is corrupt") from e
    return out


def drop_rows_from_step(path: str | os.PathLike[str], step: int) -> int:
    """Rewrite the file without rows whose "step" is `step` or later (a resumed run logs them again).

    Atomic (temp file, then rename); unreadable lines go too. Returns how many rows were dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    kept: list[str] = []
    dropped = 0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            dropped += 1
            continue
        row_step = row.get("step") if isinstance(row, dict) else None
        if isinstance(row_step, int) and row_step >= step:
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        os.replace(tmp, path)
    return dropped
