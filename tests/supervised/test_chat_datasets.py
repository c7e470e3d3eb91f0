"""NoRobotsBuilder on local data in the no_robots schema, and its "bundled" source."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import datasets
import pytest

from cookbook.recipes.chat_sl.chat_datasets import NoRobotsBuilder, bundled_chat_rows
from cookbook.renderers import TrainOnWhat
from cookbook.supervised import ChatDatasetBuilderCommonConfig, DataSourceError
from cookbook.tokenizer_utils import Tokenizer


def _no_robots_rows(n: int, offset: int = 0) -> list[dict]:
    rows = []
    for i in range(offset, offset + n):
        messages = [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"{i}"}]
        if i % 3 == 0:
            messages = [
                {"role": "system", "content": "Be brief."},
                *messages,
                {"role": "user", "content": "Again?"},
                {"role": "assistant", "content": f"{i} again"},
            ]
        rows.append({"prompt": f"Say {i}.", "prompt_id": f"id{i}", "messages": messages, "category": "Chat"})
    return rows


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _common(tokenizer_dir: Path, **kwargs: object) -> ChatDatasetBuilderCommonConfig:
    return ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer=str(tokenizer_dir),
        renderer_name="role_colon",
        max_length=128,
        batch_size=4,
        **kwargs,
    )


def _trained_texts(tokenizer: Tokenizer, batch: list) -> list[str]:
    out = []
    for datum in batch:
        pairs = zip(
            datum.loss_fn_inputs["target_tokens"].tolist(),
            datum.loss_fn_inputs["weights"].tolist(),
            strict=True,
        )
        out.append(tokenizer.decode([t for t, w in pairs if w]))
    return out


def test_local_directory_with_train_and_test(
    tmp_path: Path, tokenizer_dir: Path, tokenizer: Tokenizer
) -> None:
    _write(tmp_path / "train.jsonl", _no_robots_rows(10))
    _write(tmp_path / "test.jsonl", _no_robots_rows(3, offset=100))
    train, test = NoRobotsBuilder(common_config=_common(tokenizer_dir), dataset=str(tmp_path))()
    assert len(train) == 10 // 4
    assert (
        test is not None and len(test) == 1 and len(test.get_batch(0)) == 3
    )  # one batch of the whole test split
    # The train split is shuffled with seed 0: batch 0 holds the first rows of that order.
    order = datasets.Dataset.from_list(_no_robots_rows(10)).shuffle(seed=0)["prompt_id"]
    first = [int(pid.removeprefix("id")) for pid in order[:4]]
    texts = _trained_texts(tokenizer, train.get_batch(0))
    expected = [f" {i}\n\n {i} again\n\nUser:" if i % 3 == 0 else f" {i}\n\nUser:" for i in first]
    assert texts == expected  # all assistant messages trained (the default), mean-reduced
    for datum in train.get_batch(0):
        assert datum.loss_fn_inputs["weights"].to_numpy().sum() == pytest.approx(1.0)


def test_train_on_what_from_config(tmp_path: Path, tokenizer_dir: Path, tokenizer: Tokenizer) -> None:
    _write(tmp_path / "train.jsonl", _no_robots_rows(4))
    cfg = _common(tokenizer_dir, train_on_what=TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    train, test = NoRobotsBuilder(common_config=cfg, dataset=str(tmp_path / "train.jsonl"))()
    assert test is None  # a single file has no test split
    assert " 0\n\n 0 again\n\nUser:" not in _trained_texts(tokenizer, train.get_batch(0))
    assert " 0 again\n\nUser:" in _trained_texts(tokenizer, train.get_batch(0))


def test_directory_without_test_split(tmp_path: Path, tokenizer_dir: Path) -> None:
    _write(tmp_path / "train.jsonl", _no_robots_rows(8))
    train, test = NoRobotsBuilder(common_config=_common(tokenizer_dir), dataset=str(tmp_path))()
    assert len(train) == 2 and test is None


def test_missing_bundled_module_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tokenizer_dir: Path
) -> None:
    monkeypatch.setitem(sys.modules, "cookbook.data.bundled", None)  # as if the module were absent
    with pytest.raises(RuntimeError, match=r"dataset='bundled' needs cookbook\.data\.bundled\.chat_split"):
        NoRobotsBuilder(common_config=_common(tokenizer_dir), dataset="bundled")()


def test_bundled_data(tokenizer_dir: Path) -> None:
    rows = bundled_chat_rows("train")
    assert rows and {"prompt", "prompt_id", "messages", "category"} <= set(rows[0])
    train, test = NoRobotsBuilder(common_config=_common(tokenizer_dir), dataset="bundled")()
    assert len(train) == len(rows) // 4 and test is not None
    assert all(d.loss_fn_inputs["weights"].to_numpy().sum() == pytest.approx(1.0) for d in train.get_batch(0))


def test_unreachable_hub_id(monkeypatch: pytest.MonkeyPatch, tokenizer_dir: Path) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataSourceError, match="hub dataset 'HuggingFaceH4/no_robots'"):
        NoRobotsBuilder(common_config=_common(tokenizer_dir))()
