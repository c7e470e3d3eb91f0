"""Comparison data sets: both orders in the same batch, one-order mode, skipped rows, DPO pairs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import chz
import pytest

from cookbook.client.types import Datum
from cookbook.preference import (
    ChatDatasetBuilderFromComparisons,
    Comparison,
    ComparisonBuilderFromJsonl,
    DPODatasetBuilderFromComparisons,
    LabeledComparison,
)
from cookbook.supervised import ChatDatasetBuilderCommonConfig
from cookbook.tokenizer_utils import Tokenizer, register_tokenizer

MODEL = "preference-tests-tiny"


def _labeled(i: int, label: str = "A") -> LabeledComparison:
    comparison = Comparison(
        [{"role": "user", "content": f"What is {i} plus 1?"}],
        [{"role": "assistant", "content": f"It is {i + 1}."}],
        [{"role": "assistant", "content": f"It is {i + 2}."}],
    )
    return LabeledComparison(comparison, label, {"kind": "correctness"})  # type: ignore[arg-type]


@pytest.fixture
def files(tmp_path: Path, tokenizer: Tokenizer) -> tuple[Path, Path]:
    register_tokenizer(MODEL, tokenizer)
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    rows = [_labeled(i, "B" if i % 3 == 0 else "A").to_dict() for i in range(10)]
    rows.insert(
        4, {"comparison": {"prompt_conversation": [], "completion_A": [], "completion_B": []}, "label": "A"}
    )
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    test.write_text("".join(json.dumps(_labeled(100 + i).to_dict()) + "\n" for i in range(3)))
    return train, test


@chz.chz
class SkipEmpty(ComparisonBuilderFromJsonl):
    """Rows whose completion lists are empty are not comparisons: skipped, not fatal."""

    def example_to_labeled_comparison(self, example: dict) -> LabeledComparison | None:
        if not example["comparison"]["completion_A"]:
            return None
        return super().example_to_labeled_comparison(example)


def _config(batch_size: int, max_length: int | None = None) -> ChatDatasetBuilderCommonConfig:
    return ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer=MODEL,
        renderer_name="role_colon",
        max_length=max_length,
        batch_size=batch_size,
    )


def _decoded(tokenizer: Tokenizer, datum: Datum) -> str:
    return tokenizer.decode(
        [*datum.model_input.to_ints(), datum.loss_fn_inputs["target_tokens"].tolist()[-1]]
    )


def test_malformed_rows_are_counted_and_logged_once(
    files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    builder = SkipEmpty(train_path=str(files[0]), test_path=str(files[1]))
    with caplog.at_level(logging.WARNING):
        train, test = builder.get_labeled_comparisons()
    assert len(train) == 10 and test is not None and len(test) == 3
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped == ["SkipEmpty: skipped 1 of 11 train rows that are not valid comparisons"]


def test_both_orders_of_each_pair_share_a_batch(files: tuple[Path, Path], tokenizer: Tokenizer) -> None:
    comparisons = SkipEmpty(train_path=str(files[0]), test_path=str(files[1]))
    train, test = ChatDatasetBuilderFromComparisons(
        common_config=_config(4), comparison_builder=comparisons
    )()
    assert len(train) == 5  # 10 comparisons, 2 per batch of 4 sequences
    a_token, b_token = tokenizer.encode(" A")[0], tokenizer.encode(" B")[0]
    seen_pairs = set()
    for epoch in (0, 1):
        train.set_epoch(epoch)
        for index in range(len(train)):
            batch = train.get_batch(index)
            assert len(batch) == 4
            for first, second in (batch[0:2], batch[2:4]):
                labels = [d.loss_fn_inputs["target_tokens"].tolist()[-1] for d in (first, second)]
                assert sorted(labels) == sorted([a_token, b_token])  # label flips with the order
                text_1, text_2 = _decoded(tokenizer, first), _decoded(tokenizer, second)
                answer_1 = text_1.split("==== Completion A ====\n\nAssistant: ")[1].split("\n\n")[0]
                answer_2 = text_2.split("==== Completion B ====\n\nAssistant: ")[1].split("\n\n")[0]
                assert answer_1 == answer_2  # the same pair, completions swapped
                for datum in (first, second):
                    assert datum.loss_fn_inputs["weights"].to_numpy().sum() == 1.0
                seen_pairs.add((epoch, text_1.split("\n\n")[0]))
    assert len(seen_pairs) == 20  # every comparison once per epoch
    assert test is not None and len(test) == 1 and len(test.get_batch(0)) == 6


def test_one_order_mode_and_options(files: tuple[Path, Path], tokenizer: Tokenizer) -> None:
    comparisons = SkipEmpty(train_path=str(files[0]), test_path=str(files[1]))
    builder = ChatDatasetBuilderFromComparisons(
        common_config=_config(5), comparison_builder=comparisons, both_orders=False, include_test_set=False
    )
    train, test = builder()
    assert test is None and len(train) == 2
    first = [_decoded(tokenizer, d) for d in train.get_batch(0)]
    assert first == [_decoded(tokenizer, d) for d in builder()[0].get_batch(0)]  # the coin is deterministic
    labels = {d.loss_fn_inputs["target_tokens"].tolist()[-1] for i in range(2) for d in train.get_batch(i)}
    assert labels == {tokenizer.encode(" A")[0], tokenizer.encode(" B")[0]}
    with pytest.raises(ValueError, match="must be even"):
        ChatDatasetBuilderFromComparisons(common_config=_config(5), comparison_builder=comparisons)


def test_a_label_cut_by_max_length_drops_the_pair(files: tuple[Path, Path]) -> None:
    comparisons = SkipEmpty(train_path=str(files[0]), test_path=str(files[1]))
    train, _ = ChatDatasetBuilderFromComparisons(
        common_config=_config(4, max_length=20), comparison_builder=comparisons
    )()
    assert train.get_batch(0) == []


def test_dpo_pairs_are_chosen_then_rejected(files: tuple[Path, Path], tokenizer: Tokenizer) -> None:
    comparisons = SkipEmpty(train_path=str(files[0]), test_path=str(files[1]))
    train, test = DPODatasetBuilderFromComparisons(common_config=_config(3), comparison_builder=comparisons)()
    assert len(train) == 3 and test is not None and len(test.get_batch(0)) == 6
    labeled = {
        c.comparison.prompt_conversation[0]["content"]: c for c in comparisons.get_labeled_comparisons()[0]
    }
    for index in range(len(train)):
        batch = train.get_batch(index)
        assert len(batch) == 6
        for chosen, rejected in zip(batch[0::2], batch[1::2], strict=True):
            prompt = tokenizer.decode(chosen.model_input.to_ints()).split("\n\n")[0].removeprefix("User: ")
            better, worse = labeled[prompt].chosen_and_rejected()
            for datum, completion in ((chosen, better), (rejected, worse)):
                weights = datum.loss_fn_inputs["weights"].to_numpy()
                targets = datum.loss_fn_inputs["target_tokens"].tolist()
                trained = tokenizer.decode([t for t, w in zip(targets, weights, strict=True) if w])
                assert trained == f" {completion[0]['content']}\n\nUser:"  # the answer and its stop sequence
                assert set(weights.tolist()) == {0.0, 1.0}  # reduction "none"
