"""The builders' output on a known database, and the recipes accepting a feedback database as a data set."""

from __future__ import annotations

from pathlib import Path

import pytest

from cookbook.feedback.builders import FeedbackComparisonBuilder, FeedbackSFTBuilder, split_by_question
from cookbook.preference.comparison_datasets import ChatDatasetBuilderFromComparisons
from cookbook.recipes.preference.datasets import HHHComparisonBuilder, comparison_builder
from cookbook.recipes.preference.dpo.train import CLIConfig as DPOConfig
from cookbook.recipes.preference.dpo.train import dpo_config
from cookbook.recipes.preference.rlhf.rlhf_pipeline import PipelineConfig
from cookbook.recipes.sl_basic import ChatSFT
from cookbook.supervised.types import ChatDatasetBuilderCommonConfig
from cookbook.tokenizer_utils import Tokenizer, register_tokenizer
from tests.feedback.known_db import KnownDB, build_known_db

TOKENIZER_NAME = "feedback-test-tiny-llama"


@pytest.fixture
def known(tmp_path: Path) -> KnownDB:
    return build_known_db(tmp_path / "feedback.sqlite")


@pytest.fixture
def common(builtin_tokenizer: Tokenizer) -> ChatDatasetBuilderCommonConfig:
    register_tokenizer(TOKENIZER_NAME, builtin_tokenizer)
    return ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer=TOKENIZER_NAME, renderer_name="role_colon", max_length=128, batch_size=2
    )


def test_sft_rows_are_the_up_rated_and_corrected_answers(
    known: KnownDB, common: ChatDatasetBuilderCommonConfig
) -> None:
    train, test = FeedbackSFTBuilder(common_config=common, db=str(known.path), test_fraction=0.0).rows()
    assert test == []
    assert sorted(row["messages"][-1]["content"] for row in train) == ["3 plus 4 is 7.", "7."]
    assert all(row["messages"][0] == {"role": "user", "content": "What is 3 plus 4?"} for row in train)


def test_sft_builder_gives_datums_that_train_only_the_answer(
    known: KnownDB, common: ChatDatasetBuilderCommonConfig
) -> None:
    train, test = FeedbackSFTBuilder(common_config=common, db=str(known.path), test_fraction=0.0)()
    assert test is None and len(train) == 1
    batch = train.get_batch(0)
    assert len(batch) == 2
    for datum in batch:
        weights = datum.loss_fn_inputs["weights"].data
        assert 0 < sum(w > 0 for w in weights) < len(weights)


def test_sft_builder_refuses_a_database_with_nothing_to_imitate(
    tmp_path: Path, common: ChatDatasetBuilderCommonConfig
) -> None:
    from cookbook.feedback.store import FeedbackStore, NewAnswer

    with FeedbackStore.open(tmp_path / "empty.sqlite") as store:
        store.add_question("Q?", [NewAnswer("x", "m")], "a")
    with pytest.raises(ValueError, match="no up-rated or corrected answers"):
        FeedbackSFTBuilder(common_config=common, db=str(tmp_path / "empty.sqlite")).rows()


def test_a_missing_database_is_not_created_by_a_builder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FeedbackComparisonBuilder(db=str(tmp_path / "typo.sqlite"), test_size=1).get_labeled_comparisons()
    assert not (tmp_path / "typo.sqlite").exists()


def test_comparisons_hold_out_whole_questions(known: KnownDB) -> None:
    train, test = FeedbackComparisonBuilder(db=str(known.path), test_size=1).get_labeled_comparisons()
    assert test is not None
    questions = {tuple(m["content"] for m in c.comparison.prompt_conversation) for c in train}
    held_out = {tuple(m["content"] for m in c.comparison.prompt_conversation) for c in test}
    assert questions.isdisjoint(held_out) and len(train) + len(test) == 3
    assert all(c.label == "A" for c in [*train, *test])


def test_comparison_pairs_with_ties_dropped_or_kept(known: KnownDB) -> None:
    def pairs(ties: str) -> list[tuple[str, str, str]]:
        train, test = FeedbackComparisonBuilder(
            db=str(known.path), test_size=1, ties=ties
        ).get_labeled_comparisons()  # type: ignore[arg-type]
        return sorted(
            (c.comparison.completion_A[0]["content"], c.comparison.completion_B[0]["content"], c.label)
            for c in [*train, *(test or [])]
        )

    assert pairs("drop") == sorted(
        [
            ("The capital of France is Paris.", "The capital of France is Rome.", "A"),
            ("Sure! 7.", "7.", "A"),
            ("Sure! 7.", "8.", "A"),
        ]
    )
    assert pairs("keep") == sorted([*pairs("drop"), ("7.", "8.", "Tie")])


def test_comparisons_of_bundled_questions_carry_the_gold_kind(known: KnownDB) -> None:
    train, test = FeedbackComparisonBuilder(db=str(known.path), test_size=1).get_labeled_comparisons()
    kinds = {c.comparison.completion_B[0]["content"]: c.kind for c in [*train, *(test or [])]}
    assert kinds["The capital of France is Rome."] == "correctness"
    # "Sure! 7." over "8.": the gold rule reads a bare "7." as a correct answer and "8." as a wrong one
    assert kinds["8."] == "correctness+style"


def test_split_by_question_keeps_questions_whole() -> None:
    items = [(q, i) for q in range(10) for i in range(3)]
    train, test = split_by_question(items, lambda item: item[0], test_count=7)
    assert len(test) == 9 and {q for q, _ in train}.isdisjoint({q for q, _ in test})
    assert split_by_question(items, lambda item: item[0], 7) == (train, test)


def test_preference_model_data_from_a_feedback_database(
    known: KnownDB, common: ChatDatasetBuilderCommonConfig
) -> None:
    data = ChatDatasetBuilderFromComparisons(
        common_config=common,
        comparison_builder=FeedbackComparisonBuilder(db=str(known.path), test_size=1),
        include_test_set=False,
    )
    train, _ = data()
    assert sum(len(train.get_batch(i)) for i in range(len(train))) % 2 == 0


def test_recipes_take_a_feedback_database_wherever_a_data_set_goes(known: KnownDB) -> None:
    db = str(known.path)
    assert isinstance(comparison_builder(db, 5), FeedbackComparisonBuilder)
    assert isinstance(comparison_builder("bundled", 5), HHHComparisonBuilder)
    pipeline = PipelineConfig(comparison_dataset=db, comparison_test_size=7)
    assert pipeline.comparisons() == FeedbackComparisonBuilder(db=db, test_size=7)
    sft = ChatSFT(dataset=db).dataset_builder("tiny-llama", "role_colon", None)
    assert isinstance(sft, FeedbackSFTBuilder) and sft.db == db
    dpo = dpo_config(DPOConfig(dataset=db, test_size=3, log_path="/tmp/unused-dpo"), start_path=None)
    assert dpo.dataset_builder.comparison_builder == FeedbackComparisonBuilder(db=db, test_size=3)
