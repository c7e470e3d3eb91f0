"""JSONL files: partial last lines from killed writers are skipped on read and repaired on append."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cookbook.utils.jsonl import append_jsonl, read_jsonl, repair_partial_tail


def test_append_then_read_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "a" / "x.jsonl"
    append_jsonl(path, {"step": 0, "loss": 1.0})
    append_jsonl(path, {"step": 1, "loss": float("nan")})
    rows = read_jsonl(path)
    assert rows[0] == {"step": 0, "loss": 1.0}
    assert rows[1]["step"] == 1 and rows[1]["loss"] != rows[1]["loss"]  # NaN survives


def test_missing_file_reads_as_empty(tmp_path: Path) -> None:
    assert read_jsonl(tmp_path / "nope.jsonl") == []


def test_partial_last_line_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"step": 0}\n{"step": 1}\n{"step": 2, "lo')
    with caplog.at_level(logging.WARNING):
        assert read_jsonl(path) == [{"step": 0}, {"step": 1}]
    assert "partial last line" in caplog.text


def test_broken_middle_line_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"step": 0}\n{"ste\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"x\.jsonl:2: invalid JSON"):
        read_jsonl(path)
    assert read_jsonl(path, skip_invalid=True) == [{"step": 0}, {"step": 2}]


def test_append_cuts_off_a_partial_tail_instead_of_gluing_onto_it(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"step": 0}\n{"step": 1, "lo')
    append_jsonl(path, {"step": 1})
    assert path.read_text() == '{"step": 0}\n{"step": 1}\n'


def test_append_keeps_a_complete_tail_that_only_lacks_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"step": 0}')
    append_jsonl(path, {"step": 1})
    assert read_jsonl(path) == [{"step": 0}, {"step": 1}]


def test_repair_finds_the_last_newline_beyond_one_read_chunk(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    long_partial = '{"text": "' + "x" * 200_000
    path.write_text('{"step": 0}\n' + long_partial)
    repair_partial_tail(path)
    assert path.read_text() == '{"step": 0}\n'
    path.write_text("y" * 150_000)  # no newline at all: everything is a partial line
    repair_partial_tail(path)
    assert path.read_text() == ""
