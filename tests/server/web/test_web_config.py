"""Command-line and environment settings of `python -m server_stub`."""

from __future__ import annotations

from pathlib import Path

import pytest

from server_stub.config import ConfigError, ServerConfig, config_from_args, default_storage_dir


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COOKBOOK_SERVER_STORAGE", raising=False)
    monkeypatch.delenv("COOKBOOK_API_KEY", raising=False)
    config = config_from_args([])
    assert (config.host, config.port, config.device, config.dtype) == ("127.0.0.1", 8000, "auto", "auto")
    assert config.api_key is None and config.extra_models == {} and config.log_level == "info"
    assert config.storage_dir == Path.home() / ".cache" / "cookbook-server"
    assert config.long_poll_seconds == 25.0


def test_environment_supplies_storage_and_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COOKBOOK_SERVER_STORAGE", str(tmp_path / "store"))
    monkeypatch.setenv("COOKBOOK_API_KEY", "from-env")
    assert default_storage_dir() == tmp_path / "store"
    config = config_from_args([])
    assert config.storage_dir == tmp_path / "store" and config.api_key == "from-env"
    assert config_from_args(["--api-key", "flag"]).api_key == "flag"  # the flag wins


def test_every_option(tmp_path: Path) -> None:
    model_dir = tmp_path / "hf"
    model_dir.mkdir()
    config = config_from_args(["--host", "::1", "--port", "0", "--storage", str(tmp_path / "s"), "--device", "cpu",
                               "--dtype", "bfloat16", "--api-key", "k", "--model", f"small={model_dir}",
                               "--log-level", "debug", "--long-poll-seconds", "2.5"])
    assert config == ServerConfig(host="::1", port=0, storage_dir=tmp_path / "s", device="cpu", dtype="bfloat16",
                                  api_key="k", extra_models={"small": str(model_dir)}, log_level="debug",
                                  long_poll_seconds=2.5)


@pytest.mark.parametrize("argv", [["--model", "nodir"], ["--model", "x=/definitely/not/here"],
                                  ["--device", "tpu"], ["--dtype", "float16"], ["--port", "many"]])
def test_bad_arguments_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        config_from_args(argv)
    assert excinfo.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("settings", [{"port": 70000}, {"api_key": " "}, {"long_poll_seconds": -1.0},
                                      {"sample_batch_rows": 0}, {"device": "tpu"}])
def test_invalid_settings_are_config_errors(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ServerConfig(**settings)  # type: ignore[arg-type]
