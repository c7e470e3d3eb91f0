"""The distributed bench runs, and sharding over 2 ranks halves what a rank holds of a full-weight model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level folder of the repo, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import bench_distributed  # noqa: E402


def test_quick_bench_reports_halved_state_per_rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the ranks are `python -m bench.bench_distributed` children
    out = tmp_path / "distributed.json"
    assert bench_distributed.main(["--quick", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert results["full"]["state_ratio"] == pytest.approx(0.5, abs=0.01)  # FSDP2 shards
    assert results["lora"]["state_ratio"] == 1.0  # replicated
