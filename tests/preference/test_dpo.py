"""DPO: the objective's arithmetic, a step through the real server against the same step in plain
torch, and the training loop (metrics, checkpoints, exact resume)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
import torch

from cookbook.client.abstract import ServiceClient
from cookbook.client.types import AdamParams, Datum
from cookbook.preference import (
    Comparison,
    ComparisonBuilderFromJsonl,
    DPODatasetBuilderFromComparisons,
    LabeledComparison,
)
from cookbook.preference.dpo_datasets import dpo_pair
from cookbook.preference.dpo_loss import (
    TIE_TOLERANCE,
    dpo_loss_and_metrics,
    make_dpo_loss_fn,
    reference_sums,
    weighted_sums,
)
from cookbook.preference.train_dpo import Config, main_async
from cookbook.renderers import Renderer
from cookbook.supervised import ChatDatasetBuilderCommonConfig
from cookbook.tokenizer_utils import Tokenizer, register_tokenizer
from tests.loop_configs import make_loop_config
from tests.preference.conftest import BUILTIN


def test_dpo_loss_metrics_and_gradient_by_hand() -> None:
    beta = 0.5
    policy = torch.tensor([-3.0, -5.0, -4.0, -2.0], dtype=torch.float64, requires_grad=True)
    reference = torch.tensor([-3.5, -4.0, -4.0, -2.5], dtype=torch.float64)
    loss, metrics = dpo_loss_and_metrics(policy, reference, beta)
    # pair 0: chosen log-ratio 0.5, rejected -1.0 -> delta 1.5; pair 1: 0.0 and 0.5 -> delta -0.5
    deltas = [1.5, -0.5]
    expected = sum(-math.log(1 / (1 + math.exp(-beta * d))) for d in deltas) / 2
    assert loss.item() == pytest.approx(expected)
    assert metrics == pytest.approx(
        {
            "dpo_loss": expected,
            "accuracy": 0.5,
            "margin": beta * sum(deltas) / 2,
            "chosen_reward": beta * (0.5 + 0.0) / 2,
            "rejected_reward": beta * (-1.0 + 0.5) / 2,
        }
    )
    loss.backward()
    sigma = [1 / (1 + math.exp(beta * d)) for d in deltas]  # sigmoid(-beta * delta)
    grad = [-beta * sigma[0] / 2, beta * sigma[0] / 2, -beta * sigma[1] / 2, beta * sigma[1] / 2]
    assert policy.grad.tolist() == pytest.approx(grad)
    # pairs whose log-ratios agree to within the tolerance are ties, worth one half
    _, tied = dpo_loss_and_metrics(
        torch.tensor([-1.0, -1.0]), torch.tensor([-1.0, -1.0 + TIE_TOLERANCE / 2]), 0.1
    )
    assert tied["accuracy"] == 0.5 and tied["dpo_loss"] == pytest.approx(math.log(2), abs=1e-4)
    with pytest.raises(ValueError, match="even length"):
        dpo_loss_and_metrics(torch.zeros(3), torch.zeros(3), 0.1)


PAIRS = [
    LabeledComparison(
        Comparison(
            [{"role": "user", "content": q}],
            [{"role": "assistant", "content": a}],
            [{"role": "assistant", "content": b}],
        ),
        label,
    )  # type: ignore[arg-type]
    for q, a, b, label in [
        ("What is 2 plus 3?", "2 plus 3 is 5.", "Ugh, fine. 2 plus 3 is 4.", "A"),
        ("Write cat in capital letters.", "cat.", "Sure! CAT.", "B"),
        ("What is the opposite of hot?", "Sure! The opposite of hot is cold.", "hot.", "A"),
    ]
]


def test_custom_loss_weights_each_token_by_its_datum_weight(renderer: Renderer) -> None:
    data = [d for pair in PAIRS[:2] for d in dpo_pair(pair, renderer, None)]
    reference = [-1.0, -2.0, -3.0, -1.5]
    for nll_coef in (0.0, 0.7):
        logprobs = [
            torch.linspace(-2.0, -0.1, d.loss_fn_inputs["weights"].shape[0]).requires_grad_(True)
            for d in data
        ]
        loss, metrics = make_dpo_loss_fn(reference, beta=0.2, nll_coef=nll_coef)(data, logprobs)
        loss.backward()
        sums = weighted_sums([lp.detach() for lp in logprobs], data).double()
        delta = (sums[0::2] - torch.tensor(reference[0::2])) - (sums[1::2] - torch.tensor(reference[1::2]))
        coef = 0.2 * torch.sigmoid(-0.2 * delta) / 2  # -dL/ds of the chosen side
        totals = [float(d.loss_fn_inputs["weights"].to_numpy().sum()) for d in data]
        assert metrics["chosen_nll"] == pytest.approx(float(-(sums[0] / totals[0] + sums[2] / totals[2]) / 2))
        for i, (lp, datum) in enumerate(zip(logprobs, data, strict=True)):
            weights = datum.loss_fn_inputs["weights"].to_torch()
            per_weight = (
                -float(coef[i // 2]) - nll_coef / (2 * totals[i]) if i % 2 == 0 else float(coef[i // 2])
            )
            assert torch.allclose(lp.grad, per_weight * weights, atol=1e-6)


def _torch_target_logprobs(model: torch.nn.Module, datum: Datum) -> torch.Tensor:
    tokens = torch.tensor([datum.model_input.to_ints()])
    targets = datum.loss_fn_inputs["target_tokens"].to_torch()
    logits = model(input_ids=tokens).logits[0].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _server_sums(client: object, data: list[Datum]) -> list[float]:
    out = client.forward(data, "cross_entropy").result()  # type: ignore[attr-defined]
    return weighted_sums([o["logprobs"].to_torch() for o in out.loss_fn_outputs], data).tolist()


def test_a_dpo_step_through_the_server_equals_the_same_step_in_torch(
    service: ServiceClient, renderer: Renderer
) -> None:
    """Same initial weights on both sides; one CE step (so the policy leaves the reference), then
    one DPO step. A large Adam eps makes each update proportional to the gradient, so any error
    in the custom-loss gradient would show in the weights after the step."""
    from server_stub.models.tiny_llama import build_tiny_llama

    beta, adam = 0.5, AdamParams(learning_rate=0.5, eps=1.0)
    data = [d for pair in PAIRS for d in dpo_pair(pair, renderer, None)]
    client = service.create_lora_training_client(BUILTIN, rank=0)
    reference_client = client.save_weights_and_get_sampling_client()
    model = build_tiny_llama(torch.device("cpu"), torch.float32).train()
    reference_model = build_tiny_llama(torch.device("cpu"), torch.float32).eval()
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=adam.learning_rate,
        betas=(adam.beta1, adam.beta2),
        eps=adam.eps,
        weight_decay=0.0,
    )

    # step 1: cross_entropy on the chosen answers, on both sides
    client.forward_backward(data[0::2], "cross_entropy")
    client.optim_step(adam).result()
    optimizer.zero_grad()
    sum(
        -(_torch_target_logprobs(model, d) * d.loss_fn_inputs["weights"].to_torch()).sum() for d in data[0::2]
    ).backward()
    optimizer.step()

    # step 2: DPO against the initial weights
    reference = asyncio.run(reference_sums(reference_client, data))
    with torch.no_grad():
        torch_reference = weighted_sums([_torch_target_logprobs(reference_model, d) for d in data], data)
    assert reference == pytest.approx(torch_reference.tolist(), abs=1e-3)
    output = client.forward_backward_custom(data, make_dpo_loss_fn(reference, beta)).result()
    client.optim_step(adam).result()
    optimizer.zero_grad()
    policy = weighted_sums([_torch_target_logprobs(model, d) for d in data], data)
    torch_loss, torch_metrics = dpo_loss_and_metrics(policy.double(), torch_reference.double(), beta)
    torch_loss.backward()
    optimizer.step()
    assert output.metrics["dpo_loss"] == pytest.approx(torch_loss.item(), abs=1e-4)
    assert output.metrics["margin"] == pytest.approx(torch_metrics["margin"], abs=1e-4)
    assert abs(torch_loss.item() - math.log(2)) > 0.01  # the policy had left the reference

    with torch.no_grad():
        after_torch = weighted_sums([_torch_target_logprobs(model, d) for d in data], data)
    after_server = _server_sums(client, data)
    assert after_server == pytest.approx(after_torch.tolist(), abs=2e-3)
    assert (
        max(abs(a - b) for a, b in zip(after_server, policy.tolist(), strict=True)) > 0.1
    )  # the step did something


def test_a_training_client_reference_scores_like_the_sampler_reference(
    service: ServiceClient, renderer: Renderer
) -> None:
    """The loop's reference (one batched `forward` of a frozen training client) gives the same
    sums as the per-sequence `compute_logprobs` path, on weights that have left the base."""
    data = [d for pair in PAIRS for d in dpo_pair(pair, renderer, None)]
    client = service.create_lora_training_client(BUILTIN, rank=4, seed=3)
    client.forward_backward(data[0::2], "cross_entropy")
    client.optim_step(AdamParams(learning_rate=0.05)).result()
    sampler_reference = client.save_weights_and_get_sampling_client()
    state = client.save_state("reference-path-test").result().path
    training_reference = service.create_training_client_from_state(state)
    by_sampler = asyncio.run(reference_sums(sampler_reference, data))
    by_forward = asyncio.run(reference_sums(training_reference, data))
    assert by_forward == pytest.approx(by_sampler, abs=1e-4)
    base = asyncio.run(reference_sums(service.create_sampling_client(base_model=BUILTIN), data))
    assert max(abs(a - b) for a, b in zip(by_forward, base, strict=True)) > 0.01  # not the base's sums


@pytest.mark.parametrize(
    ("field_name", "value", "message"),
    [
        ("dpo_beta", 0.0, "dpo_beta must be positive"),
        ("nll_coef", -1.0, "nll_coef must be >= 0"),
        ("lr_schedule", "exponential", "lr_schedule must be one of"),  # the shared optimizer checks apply too
        ("ttl_seconds", 0, "ttl_seconds must be positive"),
        ("save_every", -1, "save_every must be at least 0"),
    ],
)
def test_dpo_config_rejects_bad_values(tmp_path: Path, field_name: str, value: object, message: str) -> None:
    comparisons = ComparisonBuilderFromJsonl(train_path=str(tmp_path / "train.jsonl"))
    builder = DPODatasetBuilderFromComparisons(
        common_config=ChatDatasetBuilderCommonConfig(
            model_name_for_tokenizer=BUILTIN, renderer_name="role_colon", max_length=None, batch_size=2
        ),
        comparison_builder=comparisons,
    )
    with pytest.raises(ValueError, match=message):
        make_loop_config(
            Config,
            log_path=str(tmp_path / "run"),
            model_name=BUILTIN,
            dataset_builder=builder,
            **{field_name: value},
        )


@pytest.fixture
def dpo_files(tmp_path: Path, tokenizer: Tokenizer) -> ChatDatasetBuilderCommonConfig:
    register_tokenizer("dpo-tests-tiny", tokenizer)
    rows = [p.to_dict() for p in PAIRS] * 2
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    return ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer="dpo-tests-tiny", renderer_name="role_colon", max_length=None, batch_size=2
    )


def _metrics(log_path: Path) -> list[dict]:
    return [json.loads(line) for line in (log_path / "metrics.jsonl").read_text().splitlines()]


def test_dpo_loop_logs_saves_and_resumes_exactly(
    service: ServiceClient, tmp_path: Path, dpo_files: ChatDatasetBuilderCommonConfig
) -> None:
    comparisons = ComparisonBuilderFromJsonl(
        train_path=str(tmp_path / "train.jsonl"), test_path=str(tmp_path / "test.jsonl")
    )
    config = make_loop_config(
        Config,
        log_path=str(tmp_path / "run"),
        model_name=BUILTIN,
        lora_rank=0,
        learning_rate=1e-3,
        num_epochs=2,
        save_every=2,
        eval_every=2,
        dpo_beta=0.5,
        dataset_builder=DPODatasetBuilderFromComparisons(
            common_config=dpo_files, comparison_builder=comparisons
        ),
    )
    final = asyncio.run(main_async(config, service))
    log = tmp_path / "run"
    rows = _metrics(log)
    train_rows = [r for r in rows if "dpo_loss" in r]
    assert [r["step"] for r in train_rows] == [0, 1, 2, 3, 4, 5]  # 3 batches of 2 pairs, 2 epochs
    assert (
        train_rows[0]["dpo_loss"] == pytest.approx(math.log(2), abs=1e-4) and train_rows[0]["accuracy"] == 0.5
    )
    assert train_rows[-1]["dpo_loss"] < math.log(2) and train_rows[-1]["margin"] > 0
    first_eval = rows[0]
    assert (
        first_eval["test/dpo_loss"] == pytest.approx(math.log(2), abs=1e-4)
        and first_eval["test/accuracy"] == 0.5
    )
    final_eval = rows[-1]
    assert final_eval["step"] == 6 and final_eval["test/accuracy"] == 1.0 and "test/nll" in final_eval
    records = [json.loads(line) for line in (log / "checkpoints.jsonl").read_text().splitlines()]
    assert [r["name"] for r in records] == ["000002", "000004", "final"] and final.final
    assert (log / "metrics.png").is_file()

    # a crash after the checkpoint before step 4: the rerun trains steps 4 and 5 exactly as before
    (log / "checkpoints.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:2]))
    asyncio.run(main_async(config, service))
    after = _metrics(log)  # the resume dropped the dead run's rows from step 4 on, then logged them anew
    assert [r for r in after if r["step"] < 4] == [r for r in rows if r["step"] < 4]
    resumed = [r for r in after if "dpo_loss" in r and r["step"] >= 4]
    assert [r["step"] for r in resumed] == [4, 5]
    assert [r["step"] for r in after].count(
        6
    ) == 1  # one final evaluation, not the dead run's and the new one's
    for before, after in zip(train_rows[4:], resumed, strict=True):
        assert after["dpo_loss"] == pytest.approx(before["dpo_loss"], abs=1e-4)
        assert after["margin"] == pytest.approx(before["margin"], abs=1e-4)
    assert asyncio.run(main_async(config, service)).name == "final"  # finished: nothing to do


def test_a_finished_dpo_run_continues_only_when_max_steps_is_raised(
    service: ServiceClient,
    tmp_path: Path,
    dpo_files: ChatDatasetBuilderCommonConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    comparisons = ComparisonBuilderFromJsonl(train_path=str(tmp_path / "train.jsonl"))
    builder = DPODatasetBuilderFromComparisons(common_config=dpo_files, comparison_builder=comparisons)

    def config(max_steps: int) -> Config:
        return make_loop_config(
            Config,
            log_path=str(tmp_path / "run"),
            model_name=BUILTIN,
            lora_rank=0,
            learning_rate=1e-3,
            dataset_builder=builder,
            max_steps=max_steps,
            save_every=0,
        )

    first = asyncio.run(main_async(config(2), service))
    rows = _metrics(tmp_path / "run")
    assert asyncio.run(main_async(config(2), service)) == first  # not raised: nothing to do
    assert "already finished at step 2" in capsys.readouterr().out
    assert _metrics(tmp_path / "run") == rows

    continued = asyncio.run(main_async(config(3), service))
    assert (continued.name, continued.extra["step"]) == (
        "final",
        3,
    ) and continued.state_path != first.state_path
    assert [r["step"] for r in _metrics(tmp_path / "run")[len(rows) :] if "dpo_loss" in r] == [2]
