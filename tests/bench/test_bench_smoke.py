"""The bench scripts run and print their ratios (tiny `--quick` settings; no timing is asserted).

Speed lives in bench/, never in tests: these only prove every script runs end to end against a real
server, prints its tables with the ratio columns, and saves well-formed JSON, plus the statistics
helpers the ratios come from.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import (
    bench_chunked_pass,
    bench_fairness,
    bench_memory,
    bench_overhead,
    bench_rlhf_pipeline,
    bench_sampling,
    bench_training,
    bench_wire,
    common,
)
from cookbook.client.local_server import LocalServer

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(
        tmp_path_factory.mktemp("bench-storage"), extra_args=["--log-level", "warning"]
    ) as running:
        yield running


@pytest.fixture
def keep_threads() -> Iterator[None]:
    """The scripts set torch's thread count for the whole process: put it back for later tests."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_quick(
    main: Any, server: LocalServer, json_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[str, dict]:
    assert main(["--quick", "--threads", "1", "--base-url", server.url, "--json", str(json_path)]) == 0
    return capsys.readouterr().out, json.loads(json_path.read_text())


def spread_is_positive(spread: dict[str, float]) -> bool:
    return (
        all(math.isfinite(spread[k]) for k in ("median", "low", "high"))
        and 0 < spread["low"] <= spread["high"]
    )


@pytest.mark.usefixtures("keep_threads")
def test_training_bench_prints_http_vs_in_process(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, data = run_quick(bench_training.main, server, tmp_path / "training.json", capsys)
    assert "ratio HTTP/in-proc" in out and "importance_sampling" in out and "lora r8" in out
    cases = data["training"]["cases"]
    assert [c["case"]["lora_rank"] for c in cases] == [case.lora_rank for case in bench_training.QUICK_CASES]
    for case in cases:
        assert spread_is_positive(case["throughput_ratio_http_over_in_process"])
        assert spread_is_positive(case["http_ms_per_step"]) and spread_is_positive(
            case["in_process_ms_per_step"]
        )
    assert data["machine"]["torch_threads"] == 1


@pytest.mark.usefixtures("keep_threads")
def test_sampling_bench_prints_server_vs_hf_generate_and_batching(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, data = run_quick(bench_sampling.main, server, tmp_path / "sampling.json", capsys)
    assert "ratio server/HF" in out and "ratio conc/one" in out
    (speed,) = data["sampling"]["throughput"]
    prompts, new_tokens = bench_sampling.QUICK_CASES[0]
    assert speed["prompts"] == prompts
    assert spread_is_positive(speed["throughput_ratio_server_over_hf"])
    for side in ("server", "hf_generate"):  # tokens are counted, never assumed: at most max_tokens per row
        assert 0 < speed["mean_tokens_per_row"][side] <= new_tokens
    (batching,) = data["sampling"]["concurrency"]
    assert spread_is_positive(batching["time_ratio_concurrent_over_one"])


@pytest.mark.usefixtures("keep_threads")
def test_overhead_bench_prints_the_round_trip_floor(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, data = run_quick(bench_overhead.main, server, tmp_path / "overhead.json", capsys)
    assert "forward_backward 1x8 (HTTP)" in out and "forward_backward 1x8 (in-process)" in out
    calls = data["overhead"]["calls"]
    assert all(spread_is_positive(call["wall_ms"]) for call in calls.values())
    assert math.isfinite(data["overhead"]["http_minus_in_process_ms"])


@pytest.mark.usefixtures("keep_threads")
def test_wire_bench_prints_json_and_binary_wires_vs_in_process(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, data = run_quick(bench_wire.main, server, tmp_path / "wire.json", capsys)
    assert "ratio binary/in-proc" in out and "ratio JSON/in-proc" in out and "encode request ms" in out
    cases = data["wire"]["cases"]
    assert [c["case"]["lora_rank"] for c in cases] == [case.lora_rank for case in bench_wire.QUICK_CASES]
    for case in cases:
        assert spread_is_positive(case["throughput_ratio_protobuf_over_json"])
        for wire in bench_wire.WIRES:
            assert spread_is_positive(case[wire]["throughput_ratio_over_in_process"])
            assert math.isfinite(case[wire]["call_overhead_ms"]["median"])
            assert case["codec"][wire]["request_bytes"] > 0 and case["codec"][wire]["decode_result_ms"] > 0


def test_fairness_bench_prints_both_ratios_against_their_targets(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, data = run_quick(bench_fairness.main, server, tmp_path / "fairness.json", capsys)
    assert "training step latency" in out and "sampling tokens / s" in out and "<= 2" in out
    assert spread_is_positive(data["fairness"]["latency_ratio_shared_over_alone"])
    assert spread_is_positive(data["fairness"]["throughput_ratio_shared_over_solo"])


def test_service_bench_runs_as_a_module_and_prints_the_summary(server: LocalServer, tmp_path: Path) -> None:
    json_path = tmp_path / "all.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_service",
            "--quick",
            "--threads",
            "1",
            "--base-url",
            server.url,
            "--json",
            str(json_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Summary: service vs in-process baselines" in result.stdout
    data = json.loads(json_path.read_text())
    assert {"training", "sampling", "overhead", "machine"} <= set(data)


def test_scripts_also_run_by_path() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "bench_service.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout and "--json" in result.stdout


def test_cpu_meter_reads_this_process_and_the_server(server: LocalServer) -> None:
    meter = common.CpuMeter(server.pid)
    meter.start()
    sum(i * i for i in range(200_000))  # some CPU in this process
    meter.stop()
    assert meter.client_cpu > 0 and meter.wall > 0
    assert meter.server_cpu is not None and meter.server_cpu >= 0
    assert common.process_cpu_seconds(2**22 + 12345) is None  # no such process


def test_interleaving_alternates_which_side_goes_first() -> None:
    order: list[str] = []
    values = iter(range(1, 100))
    sides = {name: (lambda name=name: order.append(name) or float(next(values))) for name in ("a", "b")}
    results = common.interleaved(3, sides)
    assert order == ["a", "b", "b", "a", "a", "b"]
    assert results == {"a": [1.0, 4.0, 5.0], "b": [2.0, 3.0, 6.0]}
    assert common.ratios(results["a"], results["b"]) == common.Spread(5.0 / 6.0, 0.5, 4.0 / 3.0, 3)


def test_spread_and_table_formatting() -> None:
    spread = common.Spread.of([3.0, 1.0, 2.0])
    assert (spread.median, spread.low, spread.high, spread.n) == (2.0, 1.0, 3.0, 3)
    assert spread.text() == "2.00 [1.00-3.00]" and spread.scaled(1e3).text() == "2000 [1000-3000]"
    assert common.Spread.from_dict(spread.as_dict()) == spread
    with pytest.raises(ValueError, match="no measurements"):
        common.Spread.of([])
    table = common.Table("T", ["name", "value"])
    table.add("long name", 1)
    assert table.render().splitlines() == ["T", "name       value", "---------  -----", "long name  1"]
    with pytest.raises(ValueError, match="2 columns"):
        table.add("only one")


def test_pipeline_bench_runs_a_fresh_pipeline_and_reports_every_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    smoke = [
        "max_steps=1",
        "comparison_test_size=60",
        "rl.eval_comparisons=4",
        "rl.batch_size=2",
        "rl.max_tokens=12",
    ]
    code = bench_rlhf_pipeline.main(
        [
            "--no-load-gauge",
            "--quiet",
            "--work-dir",
            str(tmp_path / "runs"),
            "--json",
            str(tmp_path / "pipeline.json"),
            "--",
            *smoke,
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "targets" in out and "some targets FAIL" in out  # one step per stage cannot reach them
    data = json.loads((tmp_path / "pipeline.json").read_text())
    assert data["pipeline_args"] == smoke
    run = data["runs"][0]
    assert run["returncode"] == 0 and run["wall_s"] > 0
    assert [t["target"] for t in run["targets"]] == [t.name for t in bench_rlhf_pipeline.TARGETS]
    assert all(isinstance(t["value"], float) for t in run["targets"])  # every headline metric was logged
    assert {stage: run["stages"][stage]["status"] for stage in ("sft", "rm", "rl")} == dict.fromkeys(
        ("sft", "rm", "rl"), "ran"
    )


@pytest.mark.usefixtures("keep_threads")
def test_chunked_pass_bench_prints_each_side_against_one_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "chunks.json"
    assert bench_chunked_pass.main(["--quick", "--threads", "1", "--json", str(json_path)]) == 0
    out = capsys.readouterr().out
    assert "chunked, split at the head / one" in out and "sft" in out and "rm" in out
    cases = json.loads(json_path.read_text())["chunked_pass"]["cases"]
    assert [c["kind"] for c in cases] == ["sft", "rm"]
    for case in cases:
        assert set(case["ms"]) == set(bench_chunked_pass.SIDES)
        assert all(spread_is_positive(spread) for spread in case["ms"].values())
        assert all(spread_is_positive(ratio) for ratio in case["ratio_to_baseline"].values())


@pytest.mark.usefixtures("keep_threads")
def test_memory_bench_prints_server_peaks_per_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "memory.json"
    assert bench_memory.main(["--quick", "--threads", "1", "--budgets", "256", "--json", str(json_path)]) == 0
    out = capsys.readouterr().out
    assert "peak judging" in out and "budget 256" in out
    (run,) = json.loads(json_path.read_text())["memory"]["runs"]
    assert run["budget"] == 256
    assert 0 < run["idle_rss"] <= run["judging_peak"] <= run["training_peak"]  # a high-water mark only rises
