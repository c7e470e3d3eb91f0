"""The comparison layout, its single trained label token, and the judge's prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cookbook.preference import Comparison, ComparisonRendererFromChatRenderer, LabeledComparison
from cookbook.renderers import get_renderer
from cookbook.supervised import NoTrainedTokensError
from cookbook.tokenizer_utils import Tokenizer
from tests.renderers.chat_tokenizers import write_tokenizer_dir

COMPARISON = Comparison(
    [{"role": "user", "content": "What is 2 plus 2?"}],
    [{"role": "assistant", "content": "Sure! 4."}],
    [{"role": "assistant", "content": "5."}],
)
EXPECTED_TEXT = (
    "User: What is 2 plus 2?\n\nSystem: ==== Completion A ====\n\nAssistant: Sure! 4.\n\n"
    "System: ==== Completion B ====\n\nAssistant: 5.\n\nSystem: ==== Preference ====\n\nAssistant:"
)


def test_training_example_is_the_layout_then_exactly_one_label_token(
    comparison_renderer: ComparisonRendererFromChatRenderer, tokenizer: Tokenizer
) -> None:
    for label, label_text in (("A", " A"), ("B", " B")):
        model_input, weights = comparison_renderer.to_model_input_weights(
            LabeledComparison(COMPARISON, label)
        )
        tokens = model_input.to_ints()
        assert tokenizer.decode(tokens) == EXPECTED_TEXT + label_text
        assert weights.tolist() == [0.0] * (len(tokens) - 1) + [1.0]
        assert tokens[-1] == comparison_renderer.label_token(label)
        assert tokenizer.decode([tokens[-1]]) == label_text


def test_label_tokens_come_from_the_renderer(
    comparison_renderer: ComparisonRendererFromChatRenderer, tokenizer: Tokenizer, tmp_path: Path
) -> None:
    a, b = comparison_renderer.label_token("A"), comparison_renderer.label_token("B")
    assert a != b and [a] == tokenizer.encode(" A") and [b] == tokenizer.encode(" B")
    # another chat format writes its label without role_colon's leading space
    llama_tokenizer = Tokenizer.from_dir(write_tokenizer_dir("llama3", tmp_path))
    llama = ComparisonRendererFromChatRenderer(get_renderer("llama3", llama_tokenizer))
    assert llama_tokenizer.decode([llama.label_token("A")]) == "A"
    model_input, weights = llama.to_model_input_weights(LabeledComparison(COMPARISON, "B"))
    assert weights.sum() == 1.0 and model_input.to_ints()[-1] == llama.label_token("B")


def test_inference_prompt_is_the_training_example_without_its_label(
    comparison_renderer: ComparisonRendererFromChatRenderer, tokenizer: Tokenizer
) -> None:
    model_input, _ = comparison_renderer.to_model_input_weights(LabeledComparison(COMPARISON, "A"))
    prompt = comparison_renderer.build_generation_prompt(COMPARISON)
    assert prompt.to_ints() == model_input.to_ints()[:-1]
    assert tokenizer.decode(prompt.to_ints()) == EXPECTED_TEXT


def test_datum_trains_only_the_label_and_truncation_that_cuts_it_is_an_error(
    comparison_renderer: ComparisonRendererFromChatRenderer,
) -> None:
    labeled = LabeledComparison(COMPARISON, "B")
    datum = comparison_renderer.to_datum(labeled)
    targets = datum.loss_fn_inputs["target_tokens"].tolist()
    weights = datum.loss_fn_inputs["weights"].to_numpy()
    assert np.flatnonzero(weights).tolist() == [len(targets) - 1] and weights[-1] == 1.0  # unnormalised
    assert targets[-1] == comparison_renderer.label_token("B")
    assert datum.model_input.length == len(targets)
    length = datum.model_input.length + 1
    assert (
        comparison_renderer.to_datum(labeled, max_length=length).loss_fn_inputs["target_tokens"].tolist()
        == targets
    )
    with pytest.raises(NoTrainedTokensError):
        comparison_renderer.to_datum(labeled, max_length=length - 1)


def test_swapped_comparison_renders_the_completions_in_the_other_order(
    comparison_renderer: ComparisonRendererFromChatRenderer, tokenizer: Tokenizer
) -> None:
    text = tokenizer.decode(comparison_renderer.build_generation_prompt(COMPARISON.swap()).to_ints())
    assert (
        text.index("Assistant: 5.") < text.index("==== Completion B ====") < text.index("Assistant: Sure! 4.")
    )
