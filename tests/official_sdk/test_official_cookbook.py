"""The official tinker-cookbook's sl_basic recipe, unchanged, trains against our server.

The recipe runs as a Tinker user runs it (`python -m tinker_cookbook.recipes.sl_basic`, the server's
address and key in TINKER_BASE_URL / TINKER_API_KEY), in the tinker 0.38 environment, on the
built-in tiny model served under a name from the cookbook's model table and on the bundled chat
data laid out where `datasets.load_dataset("HuggingFaceH4/no_robots")` finds it.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from cookbook.client import types
from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer

from .conftest import API_KEY, sdk_env
from .cookbook_workspace import COOKBOOK_MODEL, CookbookWorkspace, make_workspace
from .sdk_environments import sdk_python

COOKBOOK_SDK = "0.38.0"
BATCH_SIZE = 128  # fixed by sl_basic


def recipe_env(base_url: str, scratch: Path) -> dict[str, str]:
    env = sdk_env()
    env.update(TINKER_BASE_URL=base_url, TINKER_API_KEY=API_KEY, HF_HOME=str(scratch / "hf-home"))
    # The recipe fetches a price list from the web; a dead loopback proxy keeps it on this machine.
    env.update(
        HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="127.0.0.1,localhost"
    )
    return env


def run_sl_basic(
    python: Path, workspace: CookbookWorkspace, log_path: Path, env: dict[str, str], answer: str = ""
) -> None:
    """The recipe's own command line; `answer` is what a user types when asked about an existing log dir."""
    command = [
        str(python),
        "-m",
        "tinker_cookbook.recipes.sl_basic",
        f"model_name={COOKBOOK_MODEL}",
        f"log_path={log_path}",
    ]
    done = subprocess.run(command, cwd=workspace.root, env=env, input=answer, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-6000:]


@pytest.mark.slow
def test_sl_basic_recipe_trains_and_resumes_unchanged(tmp_path: Path) -> None:
    python = sdk_python(COOKBOOK_SDK)
    workspace = make_workspace(tmp_path / "workspace")
    log_path = tmp_path / "run"
    serve_as = ["--model", f"{COOKBOOK_MODEL}={workspace.model_dir}"]
    with LocalServer(tmp_path / "storage", api_key=API_KEY, extra_args=serve_as) as server:
        env = recipe_env(server.url, tmp_path)
        try:
            run_sl_basic(python, workspace, log_path, env)
            # Run again on the same log dir and answer "resume": the run is complete, so the recipe
            # only recreates its training client from the last state (with its Adam state) and stops.
            run_sl_basic(python, workspace, log_path, env, answer="resume\n")
        except AssertionError as failure:
            raise AssertionError(f"{failure}\nend of the server's log:\n{server.log_tail()}") from None

        steps = [json.loads(line) for line in (log_path / "metrics.jsonl").read_text().splitlines()]
        assert [row["progress"] for row in steps] == [0.5, 1.0]  # two batches of 128, one epoch
        for row in steps:
            assert row["num_sequences"] == BATCH_SIZE
            assert math.isfinite(row["train_mean_nll"]) and row["train_mean_nll"] > 0
            assert row["grad_norm"] > 0  # the server's optim_step metrics reached the recipe
        assert math.isfinite(steps[0]["test/nll"])  # the evaluator scored the test split before step 1
        checkpoints = [json.loads(line) for line in (log_path / "checkpoints.jsonl").read_text().splitlines()]
        final = checkpoints[-1]
        log = (log_path / "logs.log").read_text()
        assert f"Resumed training from {final['state_path']}" in log
        assert "Training was already complete; nothing to do" in log
        # The renderer check on resume read the renderer name back from the run's user_metadata.
        for complaint in (
            "Could not fetch renderer metadata",
            "has no renderer metadata",
            "Renderer mismatch",
        ):
            assert complaint not in log

        # The recipe's final sampler checkpoint serves our own client too.
        with HttpServiceClient(server.url, api_key=API_KEY) as service:
            sampler = service.create_sampling_client(model_path=final["sampler_path"])
            params = types.SamplingParams(max_tokens=4, temperature=0.0)
            response = sampler.sample(types.ModelInput.from_ints([5, 17]), 1, params).result()
            assert len(response.sequences[0].tokens) >= 1
