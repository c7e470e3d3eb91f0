"""datum_from_model_input_weights (truncate, shift, reduce) and compute_mean_nll."""

from __future__ import annotations

import numpy as np
import pytest

from cookbook.client.types import Datum, EncodedTextChunk, ModelInput, TensorData
from cookbook.supervised import NoTrainedTokensError, compute_mean_nll, datum_from_model_input_weights

# Two chunks: a 3-token prompt and a 4-token answer, as a renderer would give them.
MODEL_INPUT = ModelInput(
    chunks=[EncodedTextChunk(tokens=[10, 11, 12]), EncodedTextChunk(tokens=[20, 21, 22, 23])]
)
WEIGHTS = np.array([0, 0, 0, 1, 1, 1, 1], dtype=np.float32)


def _targets(datum: Datum) -> list[int]:
    return datum.loss_fn_inputs["target_tokens"].tolist()


def _weights(datum: Datum) -> list[float]:
    return datum.loss_fn_inputs["weights"].tolist()


def test_shift_without_reduction() -> None:
    datum = datum_from_model_input_weights(MODEL_INPUT, WEIGHTS)
    assert [c.tokens for c in datum.model_input.chunks] == [[10, 11, 12], [20, 21, 22]]
    assert _targets(datum) == [11, 12, 20, 21, 22, 23]
    assert _weights(datum) == [0, 0, 1, 1, 1, 1]
    assert datum.loss_fn_inputs["target_tokens"].dtype == "int64"
    assert datum.loss_fn_inputs["weights"].dtype == "float32"


def test_mean_reduction_makes_weights_sum_to_one() -> None:
    datum = datum_from_model_input_weights(MODEL_INPUT, WEIGHTS, reduction="mean")
    assert _weights(datum) == pytest.approx([0, 0, 0.25, 0.25, 0.25, 0.25])


def test_right_truncation_keeps_chunks_and_drops_empty_ones() -> None:
    datum = datum_from_model_input_weights(MODEL_INPUT, WEIGHTS, max_length=5, reduction="mean")
    assert [c.tokens for c in datum.model_input.chunks] == [[10, 11, 12], [20]]
    assert _targets(datum) == [11, 12, 20, 21]
    assert _weights(datum) == pytest.approx([0, 0, 0.5, 0.5])
    # Cutting exactly at a chunk boundary leaves no empty chunk behind.
    datum = datum_from_model_input_weights(MODEL_INPUT, np.ones(7, np.float32), max_length=4)
    assert [c.tokens for c in datum.model_input.chunks] == [[10, 11, 12]]


def test_first_token_weight_is_dropped_by_the_shift() -> None:
    # Only the first token is weighted: nothing predicts it, so nothing is trained.
    with pytest.raises(NoTrainedTokensError, match="no token with a non-zero weight"):
        datum_from_model_input_weights(MODEL_INPUT, np.eye(7, dtype=np.float32)[0])


def test_truncation_that_removes_every_trained_token_is_an_error() -> None:
    with pytest.raises(NoTrainedTokensError, match="after truncation to max_length=3"):
        datum_from_model_input_weights(MODEL_INPUT, WEIGHTS, max_length=3)


def test_negative_weights_pass_through_without_reduction() -> None:
    weights = np.array([0, 0, 0, -2, 0.5, 0, 1], dtype=np.float32)
    assert _weights(datum_from_model_input_weights(MODEL_INPUT, weights)) == [0, 0, -2, 0.5, 0, 1]


@pytest.mark.parametrize(
    ("weights", "kwargs", "error"),
    [
        (np.ones(6), {}, "one value per token"),
        (np.ones((7, 1)), {}, "one value per token"),
        (np.array([0, 0, 0, np.nan, 1, 1, 1]), {}, "NaN"),
        (WEIGHTS, {"reduction": "sum"}, "reduction must be"),
        (WEIGHTS, {"max_length": 1}, "max_length must be at least 2"),
        (np.array([0, 0, 0, -1, 1, 0, 0]), {"reduction": "mean"}, "positive weight sum"),
    ],
)
def test_bad_inputs(weights: np.ndarray, kwargs: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        datum_from_model_input_weights(MODEL_INPUT, weights, **kwargs)


def test_single_token_example_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 2 tokens"):
        datum_from_model_input_weights(ModelInput.from_ints([5]), [1.0])


def test_compute_mean_nll() -> None:
    logprobs = [
        TensorData.from_numpy(np.log(np.array([0.5, 0.25], np.float32))),
        np.array([-1.0, -3.0, -5.0]),
    ]
    weights = [np.array([1.0, 1.0]), TensorData.from_numpy(np.array([0.0, 2.0, 0.0], np.float32))]
    expected = (np.log(2) + np.log(4) + 2 * 3.0) / 4
    assert compute_mean_nll(logprobs, weights) == pytest.approx(expected)


def test_compute_mean_nll_errors() -> None:
    with pytest.raises(ValueError, match="datum 0: logprobs shape"):
        compute_mean_nll([[-1.0, -2.0]], [[1.0]])
    with pytest.raises(ValueError, match="total weight is zero"):
        compute_mean_nll([[-1.0]], [[0.0]])
    with pytest.raises(ValueError, match="1 logprob arrays but 2 weight arrays"):
        compute_mean_nll([[-1.0]], [[1.0], [1.0]])
