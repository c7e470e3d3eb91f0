"""load_rows: local files of every supported kind, split selection in directories, clear errors,
and hub ids going to `datasets.load_dataset`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cookbook.supervised import DataSourceError, SplitNotFoundError, load_rows

ROWS = [
    {
        "prompt": "hi",
        "prompt_id": "0",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        "category": "chat",
    },
    {
        "prompt": "2+2?",
        "prompt_id": "1",
        "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
        "category": "math",
    },
]


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.mark.parametrize(
    "name", ["rows.jsonl", "rows.jsonl.gz", "rows.json", "rows_obj.json", "rows.parquet"]
)
def test_every_file_kind_gives_the_same_rows(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text(_jsonl(ROWS))
    elif name.endswith(".gz"):
        path.write_bytes(gzip.compress(_jsonl(ROWS).encode()))
    elif name == "rows.json":
        path.write_text(json.dumps(ROWS, indent=2))
    elif name == "rows_obj.json":
        path.write_text(json.dumps({"data": ROWS}))
    else:
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    loaded = load_rows(path, "train")
    assert isinstance(loaded, datasets.Dataset)
    assert list(loaded) == ROWS
    assert load_rows(str(path), "test")[1] == ROWS[1]  # a single file is one split, whatever its name


def test_directory_splits_by_file_name(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-00000-of-00002.jsonl").write_text(_jsonl(ROWS[:1]))
    (tmp_path / "data" / "train-00001-of-00002.jsonl").write_text(_jsonl(ROWS[1:]))
    (tmp_path / "test.jsonl").write_text(_jsonl(ROWS[1:]))
    (tmp_path / "trainer.jsonl").write_text(_jsonl(ROWS * 3))  # not the train split
    (tmp_path / "train_notes.txt").write_text("not data")  # unsupported suffix: ignored
    assert list(load_rows(tmp_path, "train")) == ROWS
    assert list(load_rows(tmp_path, "test")) == ROWS[1:]
    with pytest.raises(SplitNotFoundError, match=r"no 'validation' split in .*found .*test\.jsonl"):
        load_rows(tmp_path, "validation")


def test_bad_local_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match=r"no such file or directory: \./missing\.jsonl"):
        load_rows("./missing.jsonl", "train")
    with pytest.raises(DataSourceError, match="no such file or directory"):
        load_rows(str(tmp_path / "absent"), "train")
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataSourceError, match=r"unsupported file type 'rows\.csv'"):
        load_rows(tmp_path / "rows.csv", "train")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(DataSourceError, match="line 2 is not valid JSON"):
        load_rows(bad, "train")
    scalars = tmp_path / "scalars.json"
    scalars.write_text("[1, 2]")
    with pytest.raises(DataSourceError, match="row 0 is a int, expected a JSON object"):
        load_rows(scalars, "train")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataSourceError, match="holds no rows"):
        load_rows(empty, "train")


def test_hub_ids_go_to_datasets_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, `datasets` itself refuses the hub id: proof that the hub path is the real one."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataSourceError, match="hub dataset 'HuggingFaceH4/no_robots'") as info:
        load_rows("HuggingFaceH4/no_robots", "train")
    cause = info.value.__cause__
    assert isinstance(cause, ConnectionError) and "HuggingFaceH4/no_robots" in str(cause)
    frames = []
    tb = cause.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    assert any("/datasets/" in f for f in frames)
