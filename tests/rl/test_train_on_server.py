"""`cookbook.rl.train.main` against the real server on the built-in tiny model.

The toy task (tests/rl/toy_env.py) rewards tokens from the upper half of the vocabulary; a few
full-weight RL steps raise the reward. One run is shared by several tests (module fixture):
it is checked for learning, token-in/token-out, logs, checkpoints and the re-run rules. The
other tests resume a crashed run, use a KL penalty against a checkpoint, and skip updates
that have nothing to learn from.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cookbook.client.http import HttpTrainingClient
from cookbook.client.local_server import LocalServer
from cookbook.client.types import Datum
from cookbook.rl import train
from cookbook.utils.checkpoints import load_checkpoints_file
from cookbook.utils.run_dir import RunDirError
from tests.loop_configs import make_loop_config

from . import toy_env
from .toy_env import TEST_PROMPT_OFFSET, InjectedCrash, UpperHalfDatasetBuilder

STEPS = 6


@pytest.fixture(scope="module")
def server_url(server: LocalServer) -> str:
    return server.url


def make_config(log_path: Path, server_url: str, **overrides: Any) -> train.Config:
    settings: dict[str, Any] = dict(
        learning_rate=1e-2,
        dataset_builder=UpperHalfDatasetBuilder(n_batches=STEPS),
        model_name="tiny-llama",
        max_tokens=8,
        log_path=str(log_path),
        base_url=server_url,
        lora_rank=0,
        eval_every=100,
        save_every=100,
    )
    settings.update(overrides)
    return make_loop_config(train.Config, **settings)


def read_metrics(log_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (log_path / "metrics.jsonl").read_text().splitlines()]


def train_rows(log_path: Path) -> list[dict[str, Any]]:
    """The per-step rows (the final evaluation row has no rollouts)."""
    return [row for row in read_metrics(log_path) if "env/all/reward/total" in row]


@dataclass
class SharedRun:
    log_path: Path
    config: train.Config
    sent_data: list[Datum]
    episodes: list[tuple[list[int], list[int]]]


@pytest.fixture(scope="module")
def shared_run(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """Six steps with a test set evaluated every 3 steps and a checkpoint every 3, spying on training calls."""
    log_path = tmp_path_factory.mktemp("rl") / "run"
    config = make_config(
        log_path,
        server_url,
        eval_every=3,
        save_every=3,
        dataset_builder=UpperHalfDatasetBuilder(n_batches=STEPS, n_test_groups=2),
    )
    sent: list[Datum] = []
    original = HttpTrainingClient.forward_backward_async

    async def spy(self: HttpTrainingClient, data: list[Datum], *args: Any, **kwargs: Any) -> Any:
        sent.extend(data)
        return await original(self, data, *args, **kwargs)

    toy_env.RECORDED_EPISODES.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HttpTrainingClient, "forward_backward_async", spy)
        final = train.main(config)
    assert final == load_checkpoints_file(log_path)[-1] and final.batch == STEPS
    return SharedRun(log_path, config, sent, list(toy_env.RECORDED_EPISODES))


def test_rl_raises_the_reward(shared_run: SharedRun) -> None:
    rewards = [row["env/all/reward/total"] for row in train_rows(shared_run.log_path)]
    assert len(rewards) == STEPS
    assert np.mean(rewards[-2:]) > np.mean(rewards[:2]) + 0.1, rewards
    # The test set, evaluated at steps 0 and 3 and after the last step, improves too.
    evals = {
        row["step"]: row["test/env/all/reward/total"]
        for row in read_metrics(shared_run.log_path)
        if "test/env/all/reward/total" in row
    }
    assert sorted(evals) == [0, 3, STEPS]
    assert evals[STEPS] > evals[0], evals


def test_trained_tokens_are_exactly_the_sampled_tokens(shared_run: SharedRun) -> None:
    train_episodes = [(p, a) for p, a in shared_run.episodes if p[0] < TEST_PROMPT_OFFSET]
    assert len(train_episodes) == STEPS * 8 * 4
    sent_sequences = []
    for datum in shared_run.sent_data:
        targets = datum.loss_fn_inputs["target_tokens"].to_numpy()
        sequence = [*datum.model_input.to_ints(), int(targets[-1])]
        advantages = datum.loss_fn_inputs["advantages"].to_numpy()
        sampler_logprobs = datum.loss_fn_inputs["logprobs"].to_numpy()
        n_prompt = 3
        # Prompt targets carry neither advantage nor logprob; the local mask never reaches the server.
        assert not advantages[: n_prompt - 1].any() and not sampler_logprobs[: n_prompt - 1].any()
        assert (sampler_logprobs[n_prompt - 1 :] < 0).all()
        assert set(datum.loss_fn_inputs) == {"target_tokens", "logprobs", "advantages"}
        sent_sequences.append((tuple(sequence[:n_prompt]), tuple(sequence[n_prompt:])))
    # Every sampled episode of a trained group was trained on, token for token (groups whose
    # rewards were all equal, if any, were still sent: removal is off by default).
    assert Counter(sent_sequences) == Counter((tuple(p), tuple(a)) for p, a in train_episodes)
    # The sampler's logprobs sit on the targets they score: at temperature 1 the trainer
    # computes the same numbers, so the sample-train KL is ~0.
    for row in train_rows(shared_run.log_path):
        assert abs(row["optim/kl_sample_train_v1"]) < 1e-3
        assert row["optim/kl_sample_train_v2"] < 1e-3


def test_logs_hold_the_rl_metrics_checkpoints_and_plot(shared_run: SharedRun) -> None:
    rows = read_metrics(shared_run.log_path)
    assert [row["step"] for row in rows] == [*range(STEPS), STEPS]
    first = rows[0]
    for key in (
        "env/all/reward/total",
        "env/all/reward/total_min",
        "env/all/reward/total_max",
        "env/all/ac_tokens_per_turn",
        "env/all/good_fraction",
        "by_group/frac_mixed",
        "by_group/frac_all_good",
        "by_group/frac_all_bad",
        "optim/kl_sample_train_v1",
        "optim/kl_sample_train_v2",
        "optim/entropy",
        "optim/lr",
        "optim/skipped_update",
        "progress/batch",
        "progress/done_frac",
        "time/total",
        "time/rollouts",
        "time/train",
        "time/eval",
    ):
        assert key in first, key
    server_optim_keys = [
        k
        for k in first
        if k.startswith("optim/")
        and k
        not in (
            "optim/kl_sample_train_v1",
            "optim/kl_sample_train_v2",
            "optim/entropy",
            "optim/lr",
            "optim/skipped_update",
        )
    ]
    assert server_optim_keys, "the server's optimizer metrics should be logged under optim/"
    assert first["env/all/ac_tokens_per_turn"] <= 8
    assert 4 < first["optim/entropy"] < 7  # near-uniform over 512 tokens at the start: ln 512 = 6.2
    assert [(r.name, r.batch) for r in load_checkpoints_file(shared_run.log_path)] == [
        ("000003", 3),
        ("final", STEPS),
    ]
    final = load_checkpoints_file(shared_run.log_path)[-1]
    assert final.final and final.state_path and final.sampler_path
    assert (shared_run.log_path / "metrics.png").stat().st_size > 0
    # Two groups per step are written out as text, with the exact sampled tokens.
    samples = [json.loads(line) for line in (shared_run.log_path / "rollouts.jsonl").read_text().splitlines()]
    assert [(r["step"], r["group"]) for r in samples] == [(s, g) for s in range(STEPS) for g in range(2)]
    episodes = {tuple(a) for _, a in shared_run.episodes}
    for record in samples:
        assert record["tags"] == ["upper_half"] and len(record["members"]) == 4
        for member in record["members"]:
            assert tuple(member["turns"][0]["tokens"]) in episodes
            assert member["reward"] == pytest.approx(toy_env.good_fraction(member["turns"][0]["tokens"]))
    assert (shared_run.log_path / "config.json").exists()


def test_rerunning_a_finished_run_does_nothing(shared_run: SharedRun, server_url: str) -> None:
    before = {
        name: (shared_run.log_path / name).read_bytes() for name in ("metrics.jsonl", "checkpoints.jsonl")
    }
    assert train.main(shared_run.config) == load_checkpoints_file(shared_run.log_path)[-1]
    assert {name: (shared_run.log_path / name).read_bytes() for name in before} == before


def test_another_runs_log_dir_is_refused(shared_run: SharedRun, server_url: str) -> None:
    other = make_config(shared_run.log_path, server_url, learning_rate=5e-3)
    with pytest.raises(RunDirError, match="learning_rate"):
        train.main(other)


def test_a_crashed_run_resumes_at_its_checkpoint_and_continues_identically(
    shared_run: SharedRun, server_url: str, tmp_path: Path
) -> None:
    log_path = tmp_path / "crashed"
    config = make_config(log_path, server_url, save_every=2, max_steps=4)
    toy_env.FAIL_AT_BATCH[:] = [3]
    try:
        with pytest.raises(InjectedCrash):
            train.main(config)
    finally:
        toy_env.FAIL_AT_BATCH.clear()
    assert [(r.name, r.batch) for r in load_checkpoints_file(log_path)] == [("000002", 2)]
    assert [row["step"] for row in read_metrics(log_path)] == [0, 1, 2]

    train.main(config)
    steps = [row["step"] for row in read_metrics(log_path)]
    assert steps == [0, 1, 2, 3], (
        "the resumed run starts at the checkpoint's batch, its rows replace the dead run's"
    )
    assert load_checkpoints_file(log_path)[-1].name == "final"
    # Raising max_steps continues the finished run from its final checkpoint (optimizer included).
    extended = train.main(make_config(log_path, server_url, save_every=2, max_steps=5))
    assert (extended.name, extended.batch) == ("final", 5)
    assert [row["step"] for row in read_metrics(log_path)] == [0, 1, 2, 3, 4]
    # Weights, Adam state and data position were restored each time: with the same sampling
    # seeds the resumed steps reproduce the uninterrupted shared run (same config, no evals).
    resumed = {row["step"]: row["env/all/reward/total"] for row in train_rows(log_path)[2:]}
    reference = {row["step"]: row["env/all/reward/total"] for row in train_rows(shared_run.log_path)}
    assert resumed == pytest.approx({step: reference[step] for step in resumed}, abs=1e-6)


def test_kl_penalty_against_the_checkpoint_the_run_starts_from(
    shared_run: SharedRun, server_url: str, tmp_path: Path
) -> None:
    final = load_checkpoints_file(shared_run.log_path)[-1]
    log_path = tmp_path / "kl"
    train.main(
        make_config(
            log_path,
            server_url,
            load_checkpoint_path=final.state_path,
            kl_penalty_coef=0.1,
            kl_penalty_mode="sequence",
            max_steps=2,
        )
    )
    rows = train_rows(log_path)
    # Initialised from the trained weights (weights only): the reward starts where the run ended.
    assert rows[0]["env/all/reward/total"] > 0.65
    # The reference is that same checkpoint: no divergence before the first update, some after.
    assert abs(rows[0]["kl_policy_ref"]) < 1e-4
    assert rows[1]["kl_policy_ref"] > 0
    for key in (
        "env/all/reward/kl_penalty",
        "env/all/reward/kl_penalty_min",
        "env/all/reward/kl_penalty_max",
        "env/all/reward/penalized",
    ):
        assert key in rows[1]
    assert rows[1]["env/all/reward/kl_penalty"] == pytest.approx(0.1 * rows[1]["kl_policy_ref"] * 8, rel=0.3)


def test_token_kl_against_a_sampler_checkpoint_measures_the_divergence(
    shared_run: SharedRun, server_url: str, tmp_path: Path
) -> None:
    final = load_checkpoints_file(shared_run.log_path)[-1]
    log_path = tmp_path / "token_kl"
    train.main(
        make_config(
            log_path,
            server_url,
            kl_reference_path=final.sampler_path,
            kl_penalty_coef=0.05,
            kl_penalty_mode="token",
            max_steps=1,
            loss_fn="ppo",
        )
    )
    [row] = train_rows(log_path)
    # The base model samples tokens the trained reference finds unlikely: a clearly positive KL.
    assert row["kl_policy_ref"] > 0.05
    assert "env/all/reward/kl_penalty" not in row


def test_steps_without_any_learning_signal_are_skipped(server_url: str, tmp_path: Path) -> None:
    log_path = tmp_path / "constant"
    train.main(
        make_config(
            log_path,
            server_url,
            max_steps=2,
            remove_constant_reward_groups=True,
            dataset_builder=UpperHalfDatasetBuilder(n_batches=STEPS, constant_reward=1.0),
        )
    )
    rows = train_rows(log_path)
    assert [row["optim/skipped_update"] for row in rows] == [1, 1]
    assert all(row["env/all/reward/total"] == 1.0 and row["by_group/frac_all_good"] == 1.0 for row in rows)
    assert all("optim/kl_sample_train_v1" not in row for row in rows)
    assert load_checkpoints_file(log_path)[-1].name == "final"
