"""The on-disk bundled data: the cache directory, its regeneration, and the CLI."""

from __future__ import annotations

import json

import pytest

from cookbook.data import bundled
from cookbook.data.__main__ import main


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(bundled.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_bundled_dir_generates_once_under_the_version_hash(cache) -> None:
    directory = bundled.bundled_dir()
    assert directory == cache / bundled.version_hash()
    files = {name: directory / relative for name, relative in bundled.FILES.items()}
    assert all(path.is_file() for path in files.values())
    stamps = {name: path.stat().st_mtime_ns for name, path in files.items()}
    assert bundled.bundled_dir() == directory
    assert {name: path.stat().st_mtime_ns for name, path in files.items()} == stamps
    assert [p.name for p in cache.iterdir()] == [directory.name], "no staging directories left behind"


def test_bundled_files_hold_the_in_memory_splits(cache) -> None:
    directory = bundled.bundled_dir()
    lines = (directory / "chat" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == bundled.chat_split("test")
    lines = (directory / "comparisons" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == bundled.comparison_split("test")


def test_a_damaged_cache_is_regenerated(cache) -> None:
    directory = bundled.bundled_dir()
    (directory / "comparisons" / "train.jsonl").unlink()
    assert bundled.bundled_dir() == directory
    assert (directory / "comparisons" / "train.jsonl").is_file()


def test_version_hash_is_stable() -> None:
    assert bundled.version_hash() == bundled.version_hash()
    assert len(bundled.version_hash()) == 16


def test_cli_writes_the_four_files(tmp_path, capsys) -> None:
    main(["--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    for relative in bundled.FILES.values():
        assert (tmp_path / "out" / relative).is_file()
    assert "chat/train: 3000 rows" in printed
