"""Server settings: one frozen object built from the command line and the environment.

Each setting is declared once, as a field of `ServerConfig`: its name, type, default and help, and
the environment variable that may supply it. The command line of `python -m server_stub` is derived
from those fields (`--long-poll-seconds` for `long_poll_seconds`), so a new setting is one field.
Everything the web layer tunes (long-poll time, how long results are kept, batching caps) lives
here so tests can shrink it and the CLI can expose it without touching the code that uses it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

from server_stub.models.gguf_file import GGUF_SUFFIX

STORAGE_ENV = "COOKBOOK_SERVER_STORAGE"
API_KEY_ENV = "COOKBOOK_API_KEY"
Device = Literal["auto", "cpu", "cuda"]
Dtype = Literal["auto", "float32", "bfloat16"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class ConfigError(ValueError):
    """The server was asked to start with settings it refuses (message says which and why)."""


@dataclass(frozen=True)
class Option:
    """How a ServerConfig field is set from outside; the field itself holds its name, type and default."""

    help: str
    flag: str = ""  # empty: --the-field-name
    env: str | None = None  # read when the flag is not given (an empty value counts as unset)
    metavar: str | None = None
    parse: Callable[[str], Any] | None = (
        None  # one argument's text -> value (a dict field: NAME=VALUE -> (name, value))
    )


def _boolean(text: str) -> bool:
    """A yes/no flag's text: true/false, yes/no, on/off or 1/0."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _model_spec(text: str) -> tuple[str, str]:
    """NAME=PATH: a Hugging Face model directory or a .gguf file."""
    name, sep, location = text.partition("=")
    if not sep or not name or not location:
        raise argparse.ArgumentTypeError(f"--model expects NAME=HF_DIR or NAME=FILE.gguf, got {text!r}")
    path = Path(location).expanduser()
    is_gguf = path.suffix.lower() == GGUF_SUFFIX
    if not (path.is_file() if is_gguf else path.is_dir()):
        what = "a file" if is_gguf else "a directory (or a .gguf file)"
        raise argparse.ArgumentTypeError(f"--model {name}: {location!r} is not {what}")
    return name, str(path)


@dataclass(frozen=True)
class ServerConfig:
    """How to listen, which engine to build, and the web layer's limits; each field is a flag of the CLI."""

    host: Annotated[str, Option("interface to listen on; anything but loopback requires an API key")] = (
        "127.0.0.1"
    )
    port: Annotated[int, Option("TCP port (0 = any free port)")] = 8000
    storage_dir: Annotated[
        Path, Option("checkpoint directory", flag="--storage", env=STORAGE_ENV, metavar="DIR")
    ] = field(default_factory=lambda: Path.home() / ".cache" / "cookbook-server")
    device: Annotated[Device, Option("where the engine computes (auto: cuda when available, else cpu)")] = (
        "auto"
    )
    dtype: Annotated[Dtype, Option("weights' dtype (auto: bfloat16 on cuda, float32 on cpu)")] = "auto"
    api_key: Annotated[str | None, Option("require this X-API-Key on every request", env=API_KEY_ENV)] = None
    keys_file: Annotated[
        Path | None,
        Option("a file of 'TENANT KEY' lines: each key is one tenant, who sees only what it created"),
    ] = None
    extra_models: Annotated[
        dict[str, str],
        Option(
            "serve a local Hugging Face model directory or GGUF file under NAME (repeatable)",
            flag="--model",
            metavar="NAME=HF_DIR|FILE.gguf",
            parse=_model_spec,
        ),
    ] = field(default_factory=dict)
    log_level: Annotated[LogLevel, Option("server log level")] = "info"
    # The official SDK's HTTP timeout for retrieve_future is 45 s.
    long_poll_seconds: Annotated[
        float, Option("how long retrieve_future holds a pending request before answering try_again")
    ] = 25.0
    result_grace_seconds: Annotated[
        float, Option("a fetched result stays this long, so a client that lost the answer can poll again")
    ] = 120.0
    result_ttl_seconds: Annotated[
        float,
        Option("a result nobody fetched is dropped after this long (or earlier when the caps below are hit)"),
    ] = 3600.0
    max_stored_results: Annotated[int, Option("at most this many results are kept")] = 10_000
    max_stored_bytes: Annotated[int, Option("at most this many bytes of results are kept")] = 1 << 30
    sample_batch_rows: Annotated[
        int, Option("at most this many rows (sum of num_samples) go to one sampling batch")
    ] = 256
    # A burst of concurrent requests reaches the server over tens of milliseconds; a batch that starts
    # too early makes the stragglers wait for a whole generation.
    sample_batch_window_seconds: Annotated[
        float, Option("run a sampling batch once no request has arrived for this long")
    ] = 0.02
    # On a loaded machine the gaps between requests grow, and so do generations.
    sample_batch_wait_fraction: Annotated[
        float, Option("... or for this fraction of the previous sampling batch's run time, if longer")
    ] = 0.1
    sample_batch_max_wait_seconds: Annotated[
        float, Option("never hold a sample request longer than this waiting for company")
    ] = 0.5
    # Logits are vocabulary-wide: each token of a pass holds vocab_size fp32 values at the output layer.
    max_pass_tokens: Annotated[
        int,
        Option(
            "at most this many padded tokens go through the model (and its output layer) in one piece "
            "of a prefill, a prompt-logprobs computation or a training pass; bounds peak memory"
        ),
    ] = 2048
    # A pretrained model keeps about 1 MB of training activations per token: tokens alone do not bound them.
    activation_budget_mib: Annotated[
        int,
        Option(
            "at most this many MiB (estimated from each model's shape) of a training pass piece's "
            "activations, or of a sampling batch's KV cache; cuts pieces below max_pass_tokens"
        ),
    ] = 1024
    max_pending_samples: Annotated[int, Option("at most this many sample requests wait for a batch")] = 10_000
    max_num_samples: Annotated[int, Option("the largest num_samples one sample request may ask for")] = 256
    # Well above what a client sends: the official SDK splits forward_backward at 5 MB of protobuf,
    # and max_tokens_per_request of tokens, targets and weights is a few MB of JSON.
    max_request_bytes: Annotated[
        int, Option("refuse request bodies larger than this (compressed or not) with 413")
    ] = 32 * 1024 * 1024
    # Memory follows max_pass_tokens, not this; this bounds the request's own per-token tensors and parse.
    max_tokens_per_request: Annotated[
        int, Option("refuse a forward/forward_backward whose datums hold more tokens than this, with 413")
    ] = 128 * 1024
    max_tokens_per_datum: Annotated[
        int, Option("refuse a datum longer than this many tokens (the model's context also applies)")
    ] = 32 * 1024
    # Bounds one request's KV cache and results: 128k positions of SmolLM2-135M's cache are about 6 GiB in fp32.
    max_sample_tokens: Annotated[
        int,
        Option("refuse a sample request whose num_samples x (prompt + max_tokens) is over this, with 413"),
    ] = 128 * 1024
    # Adapters are small; a full-weight model is a copy of the base with its Adam state.
    max_models_per_session: Annotated[
        int,
        Option("live training models one client session may hold; more are refused until one is unloaded"),
    ] = 128
    # An RL loop makes a sampler per step and samples only the newest few.
    max_samplers_per_session: Annotated[
        int, Option("samplers one client session keeps; past this the oldest is released")
    ] = 256
    max_storage_bytes_per_owner: Annotated[
        int, Option("refuse a save once an owner's checkpoints take this many bytes of disk")
    ] = 50 * 1024**3
    max_metadata_bytes: Annotated[
        int, Option("refuse user_metadata and tags larger than this many bytes of JSON, with 413")
    ] = 64 * 1024
    idle_unload_seconds: Annotated[
        float,
        Option("unload the models of a session finished (or silent) for this long; its checkpoints stay"),
    ] = 600.0
    compress_forward_backward: Annotated[
        bool,
        Option(
            "ask official SDKs (0.38+) to zstd-compress forward_backward bodies, which saves bandwidth "
            "to a remote server at some CPU cost on both ends",
            metavar="true|false",
            parse=_boolean,
        ),
    ] = False
    max_seq_ahead: Annotated[
        int, Option("a training call may arrive at most this many seq ids ahead of the next one to run")
    ] = 100_000
    # Longer than clients' own expiry (httpx: 5 s), so a client never reuses a connection the server
    # is closing at that instant.
    keep_alive_seconds: Annotated[float, Option("idle keep-alive connections are closed after this long")] = (
        65.0
    )
    ranks: Annotated[
        int,
        Option(
            "processes on this host that share training (torch.distributed: FSDP2 shards full weights, "
            "gloo on CPU, NCCL on CUDA, one GPU per rank); rank 0 serves the web layer"
        ),
    ] = 1
    exit_with_parent: Annotated[
        int | None,
        Option("shut down when process PID (our parent) exits, e.g. after a SIGKILL", metavar="PID"),
    ] = None

    def __post_init__(self) -> None:
        for name, setting in settings().items():
            if get_origin(setting.kind) is Literal and getattr(self, name) not in get_args(setting.kind):
                raise ConfigError(
                    f"{name} must be one of {get_args(setting.kind)}, got {getattr(self, name)!r}"
                )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535, got {self.port}")
        if (
            min(
                self.sample_batch_window_seconds,
                self.sample_batch_max_wait_seconds,
                self.sample_batch_wait_fraction,
            )
            < 0
        ):
            raise ConfigError("sample batching waits must be non-negative")
        if self.long_poll_seconds < 0 or self.result_grace_seconds < 0 or self.result_ttl_seconds <= 0:
            raise ConfigError("long-poll, grace and ttl times must be non-negative (ttl positive)")
        if (
            min(
                self.max_stored_results,
                self.sample_batch_rows,
                self.max_pending_samples,
                self.max_num_samples,
                self.max_seq_ahead,
                self.max_request_bytes,
                self.max_pass_tokens,
                self.activation_budget_mib,
                self.ranks,
                self.max_tokens_per_request,
                self.max_tokens_per_datum,
                self.max_sample_tokens,
                self.max_models_per_session,
                self.max_samplers_per_session,
                self.max_storage_bytes_per_owner,
                self.max_metadata_bytes,
            )
            < 1
        ):
            raise ConfigError("queue and batch limits must be at least 1")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("the API key must not be empty")


@dataclass(frozen=True)
class Setting:
    """One ServerConfig field as the command line and the environment see it, read off its declaration."""

    declared: dataclasses.Field[Any]
    kind: Any  # the value type, `| None` dropped: what a flag's text is parsed into
    option: Option

    @property
    def flag(self) -> str:
        return self.option.flag or "--" + self.declared.name.replace("_", "-")

    def default(self) -> Any:
        declared = self.declared
        return declared.default_factory() if declared.default is dataclasses.MISSING else declared.default  # type: ignore[misc]

    def parse(self, text: str) -> Any:
        """One flag's (or the environment's) text as a value of this field."""
        if self.option.parse is not None:
            return self.option.parse(text)
        if get_origin(self.kind) is Literal:
            return text  # argparse and __post_init__ check it is one of the choices
        return Path(text).expanduser() if self.kind is Path else self.kind(text)

    def environment_text(self) -> str | None:
        return (os.environ.get(self.option.env) or None) if self.option.env else None

    def argument(self) -> dict[str, Any]:
        """argparse settings: choices for a Literal, a repeatable flag for a dict, else one parsed value."""
        default = self.default()
        value = "none" if default is None or default == {} else default
        shown = f"${self.option.env}, else {value}" if self.option.env else value
        common = {
            "dest": self.declared.name,
            "metavar": self.option.metavar,
            "help": f"{self.option.help} (default: {shown})",
        }
        if get_origin(self.kind) is Literal:
            return {**common, "choices": get_args(self.kind), "default": default}
        if get_origin(self.kind) is dict:
            return {**common, "action": "append", "type": self.parse, "default": []}
        # argparse parses a string default like the flag's text, so an environment value gets the same checks.
        return {**common, "type": self.parse, "default": self.environment_text() or default}


@functools.cache
def settings() -> dict[str, Setting]:
    """Every ServerConfig field by name, from its `Annotated[type, Option(...)]` declaration."""
    hints = get_type_hints(ServerConfig, include_extras=True)
    found = {}
    for declared in dataclasses.fields(ServerConfig):
        kind, option_ = get_args(hints[declared.name])[:2]
        if isinstance(kind, types.UnionType):
            kind = next(arg for arg in get_args(kind) if arg is not type(None))
        found[declared.name] = Setting(declared, kind, option_)
    return found


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m server_stub`: one flag per ServerConfig field."""
    parser = argparse.ArgumentParser(
        prog="python -m server_stub",
        description="Local training server speaking the Tinker wire (official SDK 0.24 and 0.38, and ours).",
    )
    for setting in settings().values():
        parser.add_argument(setting.flag, **setting.argument())
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> ServerConfig:
    """Parse the command line (and the environment) into a ServerConfig."""
    values = vars(build_parser().parse_args(argv))
    for name, setting in settings().items():
        if get_origin(setting.kind) is dict:  # a repeated NAME=VALUE flag
            pairs = values[name]
            values[name] = dict(pairs)
            if len(values[name]) != len(pairs):
                raise ConfigError(f"{setting.flag} names must be unique")
    return ServerConfig(**values)


def default_storage_dir() -> Path:
    """Where checkpoints live unless --storage says otherwise: $COOKBOOK_SERVER_STORAGE or a per-user cache."""
    setting = settings()["storage_dir"]
    text = setting.environment_text()
    return setting.parse(text) if text else setting.default()
