"""Kill `python -m cookbook.recipes.sl_basic` with SIGKILL partway, re-run it, and check the resume.

The resumed run must start at the step its last recorded checkpoint was taken before, and from
there log exactly the losses of an uninterrupted run with the same settings: weights, Adam
state, data order and position, and step count all came back, and no batch was trained twice
or skipped. Both runs use one server started here (a SIGKILLed recipe cannot stop a bundled
server child of its own).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import chz
import pytest

from cookbook.client.local_server import LocalServer
from cookbook.recipes import sl_basic
from cookbook.utils.checkpoints import load_checkpoints_file
from cookbook.utils.jsonl import read_jsonl
from tests.recipes.recipe_runner import recipe_command, recipe_env, run_recipe

MODULE = "cookbook.recipes.sl_basic"
MAX_STEPS = 20
SAVE_EVERY = 4


def recipe_args(server: LocalServer, log_path: Path) -> list[str]:
    return [
        f"log_path={log_path}",
        f"base_url={server.url}",
        f"max_steps={MAX_STEPS}",
        f"save_every={SAVE_EVERY}",
        "eval_every=0",
        "batch_size=8",
        "max_length=96",
        "optimizer.lr_warmup_steps=3",
    ]


def train_nll(rows: list[dict]) -> dict[int, float]:
    return {row["step"]: row["train_mean_nll"] for row in rows if "train_mean_nll" in row}


def kill_after_first_checkpoint(server: LocalServer, log_path: Path, output: Path) -> None:
    """Start the recipe and SIGKILL it as soon as checkpoints.jsonl holds a record."""
    with output.open("w") as out:
        process = subprocess.Popen(
            recipe_command(MODULE, recipe_args(server, log_path)),
            env=recipe_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        while not load_checkpoints_file(log_path):
            if process.poll() is not None:
                pytest.fail(
                    f"the recipe exited ({process.returncode}) before recording a checkpoint:\n"
                    + output.read_text()[-3000:]
                )
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL


def test_sigkilled_run_resumes_at_its_checkpoint_with_the_losses_of_an_uninterrupted_run(
    server: LocalServer, tmp_path: Path
) -> None:
    killed = tmp_path / "killed"
    kill_after_first_checkpoint(server, killed, tmp_path / "killed-output.txt")
    records = load_checkpoints_file(killed)
    assert records and not any(r.final for r in records), "the run finished before it could be killed"
    resume_at = records[-1].extra["step"]
    assert resume_at % SAVE_EVERY == 0 and 0 < resume_at < MAX_STEPS
    rows_before_kill = read_jsonl(killed / "metrics.jsonl")

    run_recipe(MODULE, recipe_args(server, killed), recipe_env())
    resumed_rows = read_jsonl(killed / "metrics.jsonl")[len(rows_before_kill) :]
    assert resumed_rows[0]["step"] == resume_at
    resumed = train_nll(resumed_rows)
    assert sorted(resumed) == list(range(resume_at, MAX_STEPS))
    assert "resuming from checkpoint" in (killed / "logs.log").read_text()

    uninterrupted = tmp_path / "uninterrupted"  # the same settings, run in this process (cheaper)
    sl_basic.main(chz.entrypoint(sl_basic.CLIConfig, argv=recipe_args(server, uninterrupted)))
    reference_rows = read_jsonl(uninterrupted / "metrics.jsonl")
    reference = train_nll(reference_rows)
    assert resumed == {step: reference[step] for step in resumed}
    before_kill = train_nll(rows_before_kill)
    assert before_kill == {step: reference[step] for step in before_kill}
    final_nll = [row["test/nll"] for row in resumed_rows + reference_rows if "test/nll" in row]
    assert len(final_nll) == 2 and final_nll[0] == final_nll[1]
    assert load_checkpoints_file(killed)[-1].final
