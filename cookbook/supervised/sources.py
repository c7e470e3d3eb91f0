"""Rows of a data set from wherever they live: the Hugging Face Hub, a local file or a directory.

Every dataset builder reads through `load_rows`, so the hub path (used when online) and the
local path (offline machines, tests, the bundled data) give the same `datasets.Dataset` and
feed the same code. Local files are read here directly (no `datasets` cache, no hub lookup).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import datasets

LOCAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")


class DataSourceError(ValueError):
    """A data source could not be read: missing file, unknown format, unreachable hub id."""


class SplitNotFoundError(DataSourceError):
    """The source exists but has no file for the requested split."""


def load_rows(source: str | Path, split: str) -> datasets.Dataset:
    """The rows of `split` from a hub id, a local file, or a local directory of files.

    - a local file (JSON / JSONL / JSONL.gz / Parquet) is one split: its rows are returned
      whatever `split` is;
    - a local directory: every supported file under it whose name starts with `split`
      (train.jsonl, train-00000-of-00001.parquet, test_part2.json, ...), in name order;
    - anything else is a Hugging Face hub id passed to `datasets.load_dataset`.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return _dataset(_read_file(path), path)
    if path.is_dir():
        files = split_files(path, split)
        if not files:
            raise SplitNotFoundError(
                f"no {split!r} split in {path}: expected a file named {split}*"
                f"{'|'.join(LOCAL_SUFFIXES)}; found {_listing(path)}"
            )
        return _dataset([row for f in files for row in _read_file(f)], path)
    if _looks_like_path(str(source)):
        raise DataSourceError(f"no such file or directory: {source}")
    return _load_from_hub(str(source), split)


def is_local_file(source: str | Path) -> bool:
    """True for a single local file (a source with only one split)."""
    return Path(source).expanduser().is_file()


def split_files(directory: Path, split: str) -> list[Path]:
    """Supported files under `directory` whose name starts with `split` (then a non-letter)."""
    pattern = re.compile(rf"^{re.escape(split)}(?![A-Za-z0-9])")
    return sorted(p for p in directory.rglob("*") if p.is_file() and _suffix(p) and pattern.match(p.name))


def _load_from_hub(hub_id: str, split: str) -> datasets.Dataset:
    try:
        loaded = datasets.load_dataset(hub_id, split=split)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ...)
        raise DataSourceError(
            f"could not load split {split!r} of hub dataset {hub_id!r} (not a local "
            f"path either): {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(loaded, datasets.Dataset):
        raise DataSourceError(
            f"hub dataset {hub_id!r} split {split!r} is not a plain Dataset ({type(loaded)})"
        )
    return loaded


def _read_file(path: Path) -> list[dict[str, Any]]:
    suffix = _suffix(path)
    if suffix is None:
        raise DataSourceError(f"unsupported file type {path.name!r}: use one of {', '.join(LOCAL_SUFFIXES)}")
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        opener = gzip.open if suffix.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
    except (OSError, ValueError) as exc:
        raise DataSourceError(f"could not read {path}: {exc}") from exc
    return _parse_json_rows(text, path)


def _parse_json_rows(text: str, path: Path) -> list[dict[str, Any]]:
    """A JSON array of rows, a {"data": [...]} object, or one JSON object per line (JSONL)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        rows = [
            _json_line(line, path, n) for n, line in enumerate(text.splitlines(), start=1) if line.strip()
        ]
    else:
        if isinstance(document, dict):
            rows = document["data"] if isinstance(document.get("data"), list) else [document]
        else:
            rows = document if isinstance(document, list) else [document]
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataSourceError(f"{path}: row {n} is a {type(row).__name__}, expected a JSON object")
    return rows


def _json_line(line: str, path: Path, number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataSourceError(f"{path}: line {number} is not valid JSON: {exc.msg}") from exc


def _dataset(rows: list[dict[str, Any]], origin: Path) -> datasets.Dataset:
    if not rows:
        raise DataSourceError(f"{origin} holds no rows")
    try:
        return datasets.Dataset.from_list(rows)
    except Exception as exc:  # pyarrow type errors: rows whose columns disagree in type
        raise DataSourceError(f"{origin}: rows do not share one schema: {exc}") from exc


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in sorted(LOCAL_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def _looks_like_path(source: str) -> bool:
    """A string meant as a local path (so a typo gets "no such file", not a hub lookup)."""
    return (
        source.startswith((".", "/", "~"))
        or source.count("/") > 1
        or any(source.lower().endswith(s) for s in LOCAL_SUFFIXES)
    )


def _listing(directory: Path) -> str:
    names = sorted(p.name for p in directory.rglob("*") if p.is_file())
    return ", ".join(names[:10]) + (" ..." if len(names) > 10 else "") if names else "no files"
