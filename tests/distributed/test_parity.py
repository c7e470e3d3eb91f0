"""A 2-rank server computes what a 1-rank server computes: training, checkpoints, sampling."""

from __future__ import annotations

import numpy as np
import pytest

from cookbook.client import types
from cookbook.client.abstract import TrainingClient
from cookbook.client.errors import CookbookError
from cookbook.client.http import HttpServiceClient

BASE_MODEL = "tiny-llama"
ADAM = types.AdamParams(learning_rate=1e-2, grad_clip_norm=100.0)
FP32_TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}  # summation order differs between one rank and two
LORA_RANK = {"full": 0, "lora": 4}
RESULT_TIMEOUT_S = 600.0


def _datum(tokens: list[int], weight: float) -> types.Datum:
    n = len(tokens) - 1
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": types.TensorData(data=tokens[1:], dtype="int64", shape=[n]),
            "weights": types.TensorData(data=[weight] * n, dtype="float32", shape=[n]),
        },
    )


def _batch(step: int) -> list[types.Datum]:
    """Five datums of different lengths, so the two ranks get unequal shares and unequal chunk counts."""
    return [
        _datum([(7 * step + 3 * i + k) % 400 + 1 for k in range(4 + 9 * i)], 1.0 - 0.1 * i) for i in range(5)
    ]


def _logprobs(output: types.ForwardBackwardOutput) -> list[np.ndarray]:
    return [np.asarray(o["logprobs"].data, dtype=np.float32) for o in output.loss_fn_outputs]


def _train(client: TrainingClient, steps: int) -> tuple[list[float], list[list[np.ndarray]], list[float]]:
    losses, logprobs, grad_norms = [], [], []
    for step in range(steps):
        out = client.forward_backward(_batch(step), "cross_entropy").result(RESULT_TIMEOUT_S)
        norm = client.optim_step(ADAM).result(RESULT_TIMEOUT_S).metrics["grad_norm"]
        losses.append(out.metrics["loss:sum"])
        logprobs.append(_logprobs(out))
        grad_norms.append(norm)
    return losses, logprobs, grad_norms


def _probe(client: TrainingClient) -> list[np.ndarray]:
    """Logprobs under the current weights: after a step, they carry that step's gradients."""
    return _logprobs(client.forward(_batch(99), "cross_entropy").result(RESULT_TIMEOUT_S))


def _probe_one(client: TrainingClient) -> np.ndarray:
    """One datum's logprobs: the same batch shape on any rank count, so equal weights give equal bits."""
    return _logprobs(client.forward(_batch(99)[-1:], "cross_entropy").result(RESULT_TIMEOUT_S))[0]


def _assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, **FP32_TOLERANCE)


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_training_steps_match_one_rank(
    kind: str, two_ranks: HttpServiceClient, one_rank: HttpServiceClient
) -> None:
    pair = [
        s.create_lora_training_client(BASE_MODEL, rank=LORA_RANK[kind], seed=3) for s in (two_ranks, one_rank)
    ]
    (losses2, lps2, norms2), (losses1, lps1, norms1) = (_train(c, 3) for c in pair)
    np.testing.assert_allclose(losses2, losses1, **FP32_TOLERANCE)
    np.testing.assert_allclose(norms2, norms1, **FP32_TOLERANCE)
    for step2, step1 in zip(lps2, lps1, strict=True):
        _assert_same(step2, step1)
    _assert_same(_probe(pair[0]), _probe(pair[1]))  # the last step's gradients, through its update


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_checkpoints_cross_rank_counts(
    kind: str, two_ranks: HttpServiceClient, one_rank: HttpServiceClient
) -> None:
    for saver, loader in ((two_ranks, one_rank), (one_rank, two_ranks)):
        trained = saver.create_lora_training_client(BASE_MODEL, rank=LORA_RANK[kind], seed=5)
        _train(trained, 2)
        path = trained.save_state("crossing").result(RESULT_TIMEOUT_S).path
        resumed = loader.create_training_client_from_state_with_optimizer(path)
        np.testing.assert_array_equal(_probe_one(resumed), _probe_one(trained))
        # The optimizer state came along: the next step is the same step.
        for client in (trained, resumed):
            client.forward_backward(_batch(7), "cross_entropy")
            client.optim_step(ADAM).result(RESULT_TIMEOUT_S)
        _assert_same(_probe(resumed), _probe(trained))


def test_seeded_sampling_matches_one_rank(two_ranks: HttpServiceClient, one_rank: HttpServiceClient) -> None:
    """Concurrent requests (split across the ranks) on a snapshot and on a saved sampler checkpoint."""
    params = [types.SamplingParams(max_tokens=10, temperature=1.0, seed=seed) for seed in range(4)]
    prompts = [types.ModelInput.from_ints([5 + i, 17, 42, 9 + 3 * i]) for i in range(4)]
    answers = []
    for service in (two_ranks, one_rank):
        trained = service.create_lora_training_client(BASE_MODEL, rank=0, seed=1)
        _train(trained, 1)
        path = trained.save_weights_for_sampler("sampling").result(RESULT_TIMEOUT_S).path
        samplers = [
            trained.save_weights_and_get_sampling_client(),
            service.create_sampling_client(model_path=path),
        ]
        futures = [s.sample(p, 2, q) for s in samplers for p, q in zip(prompts, params, strict=True)]
        answers.append([[seq.tokens for seq in f.result(RESULT_TIMEOUT_S).sequences] for f in futures])
    assert answers[0] == answers[1]


def _rl_datum(tokens: list[int], logprobs: list[float]) -> types.Datum:
    n = len(tokens) - 1
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": types.TensorData(data=tokens[1:], dtype="int64", shape=[n]),
            "logprobs": types.TensorData(data=logprobs, dtype="float32", shape=[n]),
            "advantages": types.TensorData(data=[1.0] * n, dtype="float32", shape=[n]),
        },
    )


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_accumulation_and_a_refused_pass_match_one_rank(
    kind: str, two_ranks: HttpServiceClient, one_rank: HttpServiceClient
) -> None:
    """Gradients add up over two requests; a request whose loss overflows on one rank's share adds nothing."""
    good = _rl_datum(list(range(10, 30)), [-1.0] * 19)
    bad = _rl_datum([1, 2, 3], [-1000.0, -1000.0])  # the importance ratio overflows
    probes = []
    for service in (two_ranks, one_rank):
        client = service.create_lora_training_client(BASE_MODEL, rank=LORA_RANK[kind], seed=2)
        client.forward_backward(_batch(0)[:3], "cross_entropy")
        with pytest.raises(CookbookError, match="not finite"):
            client.forward_backward([good, bad, good], "importance_sampling").result(RESULT_TIMEOUT_S)
        client.forward_backward(_batch(1)[3:], "cross_entropy")
        client.optim_step(ADAM).result(RESULT_TIMEOUT_S)
        probes.append(_probe(client))
    _assert_same(probes[0], probes[1])
