"""conversation_to_datum, SupervisedDatasetFromHFDataset and FromConversationFileBuilder."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from cookbook.client.types import Datum, ModelInput
from cookbook.renderers import Message, Renderer, TrainOnWhat
from cookbook.supervised import (
    ChatDatasetBuilderCommonConfig,
    FromConversationFileBuilder,
    NoTrainedTokensError,
    SupervisedDatasetFromHFDataset,
    conversation_to_datum,
    datum_from_model_input_weights,
)
from cookbook.tokenizer_utils import Tokenizer

CONVO: list[Message] = [
    {"role": "user", "content": "What is 3 plus 4?"},
    {"role": "assistant", "content": "7"},
    {"role": "user", "content": "And 2 plus 2?"},
    {"role": "assistant", "content": "Sure! 2 plus 2 is 4."},
]


def test_conversation_to_datum_trains_all_answers_with_mean_weights(
    renderer: Renderer, tokenizer: Tokenizer
) -> None:
    datum = conversation_to_datum(CONVO, renderer, max_length=None)
    weights = datum.loss_fn_inputs["weights"].to_numpy()
    targets = datum.loss_fn_inputs["target_tokens"].tolist()
    assert weights.sum() == pytest.approx(1.0)
    trained_text = tokenizer.decode([t for t, w in zip(targets, weights, strict=True) if w > 0])
    assert trained_text == " 7\n\n Sure! 2 plus 2 is 4.\n\nUser:"
    # Same as building it by hand from the renderer: one path for every consumer.
    model_input, raw = renderer.build_supervised_example(CONVO, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    assert datum == datum_from_model_input_weights(model_input, raw, reduction="mean")
    assert datum.model_input.to_ints() == model_input.to_ints()[:-1]


def test_conversation_to_datum_options(renderer: Renderer, tokenizer: Tokenizer) -> None:
    last_only = conversation_to_datum(
        CONVO, renderer, None, TrainOnWhat.LAST_ASSISTANT_MESSAGE, reduction="none"
    )
    weights = last_only.loss_fn_inputs["weights"].to_numpy()
    assert set(weights.tolist()) == {0.0, 1.0}
    targets = last_only.loss_fn_inputs["target_tokens"].tolist()
    assert (
        tokenizer.decode([t for t, w in zip(targets, weights, strict=True) if w])
        == " Sure! 2 plus 2 is 4.\n\nUser:"
    )
    prompt_len = renderer.build_generation_prompt(CONVO[:1]).length
    with pytest.raises(NoTrainedTokensError):
        conversation_to_datum(CONVO, renderer, max_length=prompt_len)  # the answer is cut off


def _rows(n: int) -> list[dict]:
    return [
        {
            "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
            "i": i,
        }
        for i in range(n)
    ]


def _index_datum(row: dict) -> Datum:
    """A Datum that remembers which row it came from (its single target token is the row index)."""
    return Datum(
        model_input=ModelInput.from_ints([0]), loss_fn_inputs={"target_tokens": [row["i"]], "weights": [1.0]}
    )


def _ids(batch: list[Datum]) -> list[int]:
    return [d.loss_fn_inputs["target_tokens"].tolist()[0] for d in batch]


def test_batches_len_and_order() -> None:
    dataset = SupervisedDatasetFromHFDataset(
        datasets.Dataset.from_list(_rows(10)), batch_size=3, map_fn=_index_datum
    )
    assert len(dataset) == 3  # the trailing partial batch is dropped
    assert [_ids(dataset.get_batch(i)) for i in range(3)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with pytest.raises(IndexError, match="batch 3 out of range: the dataset has 3 batches"):
        dataset.get_batch(3)


def test_set_epoch_reshuffles_deterministically() -> None:
    def epoch_order(seed: int) -> list[int]:
        dataset = SupervisedDatasetFromHFDataset(
            _rows(12), batch_size=4, map_fn=_index_datum
        )  # a plain list works
        dataset.set_epoch(seed)
        return [i for b in range(len(dataset)) for i in _ids(dataset.get_batch(b))]

    assert epoch_order(1) == epoch_order(1)
    assert epoch_order(1) != epoch_order(2)
    assert sorted(epoch_order(1)) == list(range(12)) and epoch_order(1) != list(range(12))
    # An epoch's order depends on its seed only, not on earlier epochs.
    dataset = SupervisedDatasetFromHFDataset(_rows(12), batch_size=4, map_fn=_index_datum)
    dataset.set_epoch(5)
    dataset.set_epoch(1)
    assert [i for b in range(3) for i in _ids(dataset.get_batch(b))] == epoch_order(1)


def test_epoch_order_is_datasets_shuffle_and_each_row_is_rendered_once() -> None:
    rendered: list[int] = []

    def counting(row: dict) -> Datum:
        rendered.append(row["i"])
        return _index_datum(row)

    rows = datasets.Dataset.from_list(_rows(50))
    dataset = SupervisedDatasetFromHFDataset(rows, batch_size=7, map_fn=counting)
    for seed in (0, 3, 12345):
        dataset.set_epoch(seed)
        shuffled = rows.shuffle(seed=seed)["i"]
        assert [i for b in range(len(dataset)) for i in _ids(dataset.get_batch(b))] == shuffled[:49]
    assert sorted(rendered) == list(range(50))  # later epochs reuse the Datums made in earlier ones


def test_flatmap_can_drop_or_expand_rows() -> None:
    dataset = SupervisedDatasetFromHFDataset(
        _rows(4), batch_size=4, flatmap_fn=lambda row: [_index_datum(row)] * (row["i"] % 3)
    )
    assert _ids(dataset.get_batch(0)) == [1, 2, 2]
    with pytest.raises(ValueError, match="exactly one of map_fn and flatmap_fn"):
        SupervisedDatasetFromHFDataset(_rows(4), 2)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        SupervisedDatasetFromHFDataset(_rows(4), 0, map_fn=_index_datum)


def _common(tokenizer_dir: Path, batch_size: int = 2, **kwargs: object) -> ChatDatasetBuilderCommonConfig:
    return ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer=str(tokenizer_dir),
        renderer_name="role_colon",
        max_length=64,
        batch_size=batch_size,
        **kwargs,
    )


def test_conversation_file_builder(tmp_path: Path, tokenizer_dir: Path, tokenizer: Tokenizer) -> None:
    path = tmp_path / "convos.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows(9)))
    builder = FromConversationFileBuilder(
        common_config=_common(tokenizer_dir), file_path=str(path), test_size=3
    )
    assert builder.tokenizer is tokenizer  # found locally: no server is contacted
    train, test = builder()
    assert test is not None and len(train) == 3 and len(test) == 1
    answers = [
        tokenizer.decode(
            [
                t
                for t, w in zip(
                    d.loss_fn_inputs["target_tokens"].tolist(),
                    d.loss_fn_inputs["weights"].tolist(),
                    strict=True,
                )
                if w
            ]
        )
        for split in (train, test)
        for b in range(len(split))
        for d in split.get_batch(b)
    ]
    assert sorted(answers) == sorted(
        f" a{i}\n\nUser:" for i in range(9)
    )  # every row once, train and test apart
    no_test, none = FromConversationFileBuilder(common_config=_common(tokenizer_dir), file_path=str(path))()
    assert none is None and len(no_test) == 4
    with pytest.raises(ValueError, match=r"test_size must be in \[0, 9\)"):
        FromConversationFileBuilder(common_config=_common(tokenizer_dir), file_path=str(path), test_size=9)()


def test_train_on_what_from_config(tmp_path: Path, tokenizer_dir: Path) -> None:
    path = tmp_path / "convos.jsonl"
    path.write_text(json.dumps({"messages": CONVO}) + "\n")
    cfg = _common(tokenizer_dir, batch_size=1, train_on_what=TrainOnWhat.ALL_MESSAGES)
    (datum,) = FromConversationFileBuilder(common_config=cfg, file_path=str(path))()[0].get_batch(0)
    default_cfg = _common(tokenizer_dir, batch_size=1)
    (default,) = FromConversationFileBuilder(common_config=default_cfg, file_path=str(path))()[0].get_batch(0)
    trained = np.count_nonzero(datum.loss_fn_inputs["weights"].to_numpy())
    assert trained > np.count_nonzero(default.loss_fn_inputs["weights"].to_numpy())


def test_rows_with_nothing_to_train_are_skipped(tmp_path: Path, tokenizer_dir: Path) -> None:
    long_prompt = {
        "messages": [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]
    }
    path = tmp_path / "convos.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [long_prompt, *_rows(1)]))
    train, _ = FromConversationFileBuilder(common_config=_common(tokenizer_dir), file_path=str(path))()
    assert len(train.get_batch(0)) == 1
