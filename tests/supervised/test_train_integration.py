"""The SFT loop against the real server (HTTP + PyTorch, built-in tiny model, bundled chat data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cookbook.client.local_server import LocalServer
from cookbook.data.bundled import chat_split
from cookbook.supervised import train
from cookbook.supervised.data import FromConversationFileBuilder
from cookbook.supervised.types import ChatDatasetBuilderCommonConfig
from cookbook.utils.jsonl import read_jsonl
from tests.loop_configs import make_loop_config


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A slice of the bundled chat data: 40 test rows and 240 training rows (30 batches of 8)."""
    path = tmp_path_factory.mktemp("data") / "chat.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in chat_split("train")[:280]))
    return path


def config(server: LocalServer, chat_file: Path, log_path: Path, **overrides: Any) -> train.Config:
    common = ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer="tiny-llama",
        renderer_name="role_colon",
        max_length=96,
        batch_size=8,
        base_url=server.url,
    )
    settings: dict[str, Any] = dict(
        log_path=str(log_path),
        model_name="tiny-llama",
        base_url=server.url,
        lora_rank=0,
        dataset_builder=FromConversationFileBuilder(
            common_config=common, file_path=str(chat_file), test_size=40
        ),
        learning_rate=3e-3,
        lr_schedule="linear",
        lr_warmup_steps=2,
        max_steps=10,
        eval_every=5,
        save_every=0,
    )
    settings.update(overrides)
    return make_loop_config(train.Config, **settings)


def per_step(log_path: Path, key: str) -> dict[int, float]:
    return {row["step"]: row[key] for row in read_jsonl(log_path / "metrics.jsonl") if key in row}


def test_full_weight_training_makes_train_and_test_nll_fall(
    server: LocalServer, chat_file: Path, tmp_path: Path
) -> None:
    final = train.main(config(server, chat_file, tmp_path / "run"))

    train_nll = per_step(tmp_path / "run", "train_mean_nll")
    test_nll = per_step(tmp_path / "run", "test/nll")
    assert sorted(train_nll) == list(range(10))
    assert sorted(test_nll) == [0, 5, 10]
    assert test_nll[10] < test_nll[5] < test_nll[0]
    assert max(train_nll[s] for s in (7, 8, 9)) < min(train_nll[s] for s in (0, 1, 2))
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert any(key.startswith("optim/") for key in rows[0])
    assert final.final and final.state_path and final.sampler_path
    assert (tmp_path / "run" / "metrics.png").exists()


def test_pipelining_gives_exactly_the_results_of_sequential_steps(
    server: LocalServer, chat_file: Path, tmp_path: Path
) -> None:
    runs = {}
    for submit_ahead in (0, 2):
        log_path = tmp_path / f"ahead{submit_ahead}"
        train.main(config(server, chat_file, log_path, submit_ahead=submit_ahead, max_steps=6, eval_every=3))
        runs[submit_ahead] = {
            key: per_step(log_path, key) for key in ("train_mean_nll", "test/nll", "optim/grad_norm")
        }
    assert runs[0]["train_mean_nll"] and runs[0]["optim/grad_norm"]
    assert runs[0] == runs[2]


def test_load_checkpoint_path_starts_a_new_run_from_the_previous_weights(
    server: LocalServer, chat_file: Path, tmp_path: Path
) -> None:
    first = train.main(config(server, chat_file, tmp_path / "first", max_steps=4, eval_every=0))
    second = config(
        server,
        chat_file,
        tmp_path / "second",
        max_steps=1,
        eval_every=1,
        load_checkpoint_path=first.state_path,
    )
    train.main(second)

    # test/nll before the second run's first step is the first run's final test/nll: same weights
    assert per_step(tmp_path / "second", "test/nll")[0] == per_step(tmp_path / "first", "test/nll")[4]
