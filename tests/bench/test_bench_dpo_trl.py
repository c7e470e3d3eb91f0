"""The DPO-beside-TRL bench runs end to end (tiny `--quick` settings; no timing is asserted)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import bench_dpo_trl
from cookbook.client.local_server import LocalServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalServer]:
    with LocalServer(tmp_path / "storage", extra_args=["--log-level", "warning"]) as running:
        yield running


def test_dpo_trl_bench_prints_both_sides_and_their_ratio(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    threads = torch.get_num_threads()
    json_path = tmp_path / "dpo.json"
    try:
        args = ["--quick", "--threads", "1", "--base-url", server.url, "--json", str(json_path)]
        assert bench_dpo_trl.main(args) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "DPO beside TRL" in out and "ratio" in out
    data = json.loads(json_path.read_text())["dpo_trl"]
    for side in ("ours", "trl"):
        assert data["seconds_per_step"][side]["median"] > 0
        (accuracy,) = data["accuracy"][side]
        assert 0.0 <= accuracy <= 1.0
    assert math.isfinite(data["ratio"]["median"]) and data["ratio"]["median"] > 0
