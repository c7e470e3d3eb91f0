"""Command-line and environment settings of `python -m server_stub`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest

from server_stub.config import (
    ConfigError,
    ServerConfig,
    Setting,
    build_parser,
    config_from_args,
    default_storage_dir,
    settings,
)


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
    config = config_from_args(
        [
            "--host",
            "::1",
            "--port",
            "0",
            "--storage",
            str(tmp_path / "s"),
            "--device",
            "cpu",
            "--dtype",
            "bfloat16",
            "--api-key",
            "k",
            "--model",
            f"small={model_dir}",
            "--log-level",
            "debug",
            "--long-poll-seconds",
            "2.5",
        ]
    )
    assert config == ServerConfig(
        host="::1",
        port=0,
        storage_dir=tmp_path / "s",
        device="cpu",
        dtype="bfloat16",
        api_key="k",
        extra_models={"small": str(model_dir)},
        log_level="debug",
        long_poll_seconds=2.5,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--model", "nodir"],
        ["--model", "x=/definitely/not/here"],
        ["--device", "tpu"],
        ["--dtype", "float16"],
        ["--port", "many"],
    ],
)
def test_bad_arguments_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        config_from_args(argv)
    assert excinfo.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "settings",
    [
        {"port": 70000},
        {"api_key": " "},
        {"long_poll_seconds": -1.0},
        {"sample_batch_rows": 0},
        {"device": "tpu"},
    ],
)
def test_invalid_settings_are_config_errors(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ServerConfig(**settings)  # type: ignore[arg-type]


def _sample_text(setting: Setting, tmp_path: Path) -> str:
    """A command-line value for `setting` that differs from its default."""
    kind = setting.kind
    if get_origin(kind) is Literal:
        return next(choice for choice in get_args(kind) if choice != setting.default())
    if get_origin(kind) is dict:
        (tmp_path / "hf").mkdir(exist_ok=True)
        return f"small={tmp_path / 'hf'}"
    samples: dict[Any, str] = {
        str: "sample",
        int: "7",
        float: "0.75",
        bool: "false" if setting.default() else "true",
        Path: str(tmp_path / "elsewhere"),
    }
    return samples[kind]


def _clear_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in settings().values():
        if setting.option.env:
            monkeypatch.delenv(setting.option.env, raising=False)


def test_every_field_is_a_flag_and_no_flag_is_undeclared() -> None:
    declared = {field.name for field in dataclasses.fields(ServerConfig)}
    actions = [action for action in build_parser()._actions if action.dest != "help"]
    assert {action.dest for action in actions} == declared == set(settings())
    assert len({flag for action in actions for flag in action.option_strings}) == len(actions)
    assert all(action.help and "(default: " in action.help for action in actions)


def test_no_flags_give_the_declared_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_environment(monkeypatch)
    assert config_from_args([]) == ServerConfig()


@pytest.mark.parametrize("name", list(settings()))
def test_every_declared_option_parses(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_environment(monkeypatch)
    setting = settings()[name]
    text = _sample_text(setting, tmp_path)
    config = config_from_args([setting.flag, text])
    expected = dict([setting.parse(text)]) if get_origin(setting.kind) is dict else setting.parse(text)
    assert getattr(config, name) == expected != setting.default()
    assert config == dataclasses.replace(ServerConfig(), **{name: expected})  # nothing else moved


@pytest.mark.parametrize("name", [name for name, setting in settings().items() if setting.option.env])
def test_environment_variables_apply_when_the_flag_is_absent(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clear_environment(monkeypatch)
    setting = settings()[name]
    assert setting.option.env is not None
    from_env, from_flag = _sample_text(setting, tmp_path / "env"), _sample_text(setting, tmp_path / "flag")
    monkeypatch.setenv(setting.option.env, from_env)
    assert getattr(config_from_args([]), name) == setting.parse(from_env)
    assert getattr(config_from_args([setting.flag, from_flag]), name) == setting.parse(from_flag)
    monkeypatch.setenv(setting.option.env, "")  # empty counts as unset
    assert getattr(config_from_args([]), name) == setting.default()


def test_repeated_model_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--model names must be unique"):
        config_from_args(["--model", f"a={tmp_path}", "--model", f"a={tmp_path}"])


def test_the_help_names_each_flag_with_its_help_and_environment_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        config_from_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for setting in settings().values():
        assert setting.flag in shown and " ".join(setting.option.help.split()) in shown
        if setting.option.env:
            assert f"${setting.option.env}" in shown
