"""Recipes of the official tinker-cookbook, unchanged, train against our server.

Each recipe runs as a Tinker user runs it (`python -m tinker_cookbook.recipes.X key=value ...`, the
server's address and key in TINKER_BASE_URL / TINKER_API_KEY), in the tinker 0.38 environment, on
the built-in tiny model served under a name from the cookbook's model table and on the bundled
data laid out where `datasets.load_dataset` finds the Hub ids the recipes name.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cookbook.client import types
from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer

from .cookbook_workspace import COOKBOOK_DATASETS, COOKBOOK_MODEL, CookbookWorkspace, make_workspace
from .sdk_environments import API_KEY, sdk_env, sdk_python

pytestmark = pytest.mark.slow
COOKBOOK_SDK = "0.38.0"
SL_BASIC_BATCH = 128  # fixed by sl_basic


@dataclass(frozen=True)
class CookbookRig:
    """A workspace, a server that serves its model under the cookbook's name, and the recipes' interpreter."""

    workspace: CookbookWorkspace
    server: LocalServer
    python: Path
    scratch: Path

    def env(self) -> dict[str, str]:
        env = sdk_env()
        env.update(TINKER_BASE_URL=self.server.url, TINKER_API_KEY=API_KEY)
        env.update(HF_HOME=str(self.scratch / "hf-home"), TINKER_COOKBOOK_RUNS_DIR=str(self.scratch / "runs"))
        # Recipes fetch a price list from the web; a dead loopback proxy keeps them on this machine.
        env.update(
            HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="127.0.0.1,localhost"
        )
        return env

    def run(self, recipe: str, *settings: str, answer: str = "") -> None:
        """The recipe's own command line; `answer` is what a user types when asked about an existing log dir."""
        command = [str(self.python), "-m", f"tinker_cookbook.recipes.{recipe}", *settings]
        done = subprocess.run(
            command, cwd=self.workspace.root, env=self.env(), input=answer, capture_output=True, text=True
        )
        assert done.returncode == 0, (
            f"{' '.join(command)} failed:\n{done.stderr[-6000:]}\nend of the server's log:\n{self.server.log_tail()}"
        )


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CookbookRig]:
    python = sdk_python(COOKBOOK_SDK)
    scratch = tmp_path_factory.mktemp("official-cookbook")
    workspace = make_workspace(scratch / "workspace")
    serve_as = ["--model", f"{COOKBOOK_MODEL}={workspace.model_dir}"]
    with LocalServer(scratch / "storage", api_key=API_KEY, extra_args=serve_as) as server:
        yield CookbookRig(workspace, server, python, scratch)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sl_basic_trains_and_resumes_unchanged(rig: CookbookRig, tmp_path: Path) -> None:
    log_path = tmp_path / "sl_basic"
    settings = (f"model_name={COOKBOOK_MODEL}", f"log_path={log_path}")
    rig.run("sl_basic", *settings)
    # Again on the same log dir, answering "resume": the run is complete, so the recipe only
    # recreates its training client from the last state (with its Adam state) and stops.
    rig.run("sl_basic", *settings, answer="resume\n")

    steps = read_jsonl(log_path / "metrics.jsonl")
    train_rows = COOKBOOK_DATASETS["HuggingFaceH4/no_robots"].sizes["train"]
    assert (
        [row["progress"] for row in steps]
        == [0.5, 1.0]
        == [(i + 1) * SL_BASIC_BATCH / train_rows for i in range(2)]
    )
    for row in steps:
        assert row["num_sequences"] == SL_BASIC_BATCH
        assert math.isfinite(row["train_mean_nll"]) and row["train_mean_nll"] > 0
        assert row["grad_norm"] > 0  # the server's optim_step metrics reached the recipe
    assert math.isfinite(steps[0]["test/nll"])  # the evaluator scored the test split before step 1
    final = read_jsonl(log_path / "checkpoints.jsonl")[-1]
    log = (log_path / "logs.log").read_text()
    assert f"Resumed training from {final['state_path']}" in log
    assert "Training was already complete; nothing to do" in log
    # The renderer check on resume read the renderer name back from the run's user_metadata.
    for complaint in ("Could not fetch renderer metadata", "has no renderer metadata", "Renderer mismatch"):
        assert complaint not in log

    # The recipe's final sampler checkpoint serves our own client too.
    with HttpServiceClient(rig.server.url, api_key=API_KEY) as service:
        sampler = service.create_sampling_client(model_path=final["sampler_path"])
        params = types.SamplingParams(max_tokens=4, temperature=0.0)
        response = sampler.sample(types.ModelInput.from_ints([5, 17]), 1, params).result()
        assert len(response.sequences[0].tokens) >= 1


def test_rlhf_pipeline_runs_its_three_stages_unchanged(rig: CookbookRig) -> None:
    rig.run(
        "preference.rlhf.rlhf_pipeline",
        f"base_model={COOKBOOK_MODEL}",
        "short_name=tiny",
        "batch_size=16",
        "max_steps=2",
        "lora_rank=8",
        "max_length=512",
        "rl_max_tokens=16",
        # The RL stage's win-rate evaluator samples 1024 tokens, past the tiny model's 512-token context.
        "eval_every=0",
    )
    stages = rig.scratch / "runs" / "rlhf-tiny"
    for stage in ("sft", "rm"):
        rows = read_jsonl(stages / stage / "metrics.jsonl")
        assert len(rows) == 2 and all(math.isfinite(row["train_mean_nll"]) for row in rows)
    sft_final = read_jsonl(stages / "sft" / "checkpoints.jsonl")[-1]
    # The RL stage starts from the SFT stage's state (tinker 0.38 creates that model with one load_weights).
    assert f"Loaded weights from {sft_final['state_path']}" in (stages / "rl" / "logs.log").read_text()
    rl_steps = [
        row for row in read_jsonl(stages / "rl" / "metrics.jsonl") if "optim/kl_sample_train_v1" in row
    ]
    assert len(rl_steps) == 2
    for row in rl_steps:
        # The sampler's logprobs and the training pass's logprobs of the same tokens agree.
        assert abs(row["optim/kl_sample_train_v1"]) < 1e-4
