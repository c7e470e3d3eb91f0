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

from cookbook.client.local_server import LocalServer

from .conftest import API_KEY, sdk_env
from .cookbook_workspace import COOKBOOK_MODEL, DATASET_ROWS, make_workspace
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


@pytest.mark.slow
def test_sl_basic_recipe_trains_unchanged(tmp_path: Path) -> None:
    python = sdk_python(COOKBOOK_SDK)
    workspace = make_workspace(tmp_path / "workspace")
    log_path = tmp_path / "run"
    serve_as = ["--model", f"{COOKBOOK_MODEL}={workspace.model_dir}"]
    with LocalServer(tmp_path / "storage", api_key=API_KEY, extra_args=serve_as) as server:
        command = [
            str(python),
            "-m",
            "tinker_cookbook.recipes.sl_basic",
            f"model_name={COOKBOOK_MODEL}",
            f"log_path={log_path}",
        ]
        done = subprocess.run(
            command,
            cwd=workspace.root,
            env=recipe_env(server.url, tmp_path),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"{done.stderr[-6000:]}\nend of the server's log:\n{server.log_tail()}"

    steps = [json.loads(line) for line in (log_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in steps] == list(range(DATASET_ROWS["train"] // BATCH_SIZE))
    for row in steps:
        assert math.isfinite(row["train_mean_nll"]) and row["train_mean_nll"] > 0
        assert row["num_sequences"] == BATCH_SIZE
    assert math.isfinite(steps[0]["test/nll"])  # the evaluator ran before the first step
    final = [json.loads(line) for line in (log_path / "checkpoints.jsonl").read_text().splitlines()][-1]
    assert final["state_path"].startswith("tinker://") and final["sampler_path"].startswith("tinker://")
