"""A model's tokenizer, loaded with the `tokenizers` library (never transformers).

`Tokenizer` wraps a `tokenizers.Tokenizer` with the metadata that lives outside tokenizer.json
(bos/eos/pad and the model's own Jinja chat template), and offers the small HF-like surface the cookbook uses.
`get_tokenizer(model_name)` finds one: a tokenizer registered in this process, a local Hugging
Face directory, or the server's copy (our servers hand out tokenizer.json, so a client never
needs transformers or the Hub). Results are cached per model name.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer as _RawTokenizer

# transformers 5 saves a model's chat template beside tokenizer_config.json rather than inside it.
_CHAT_TEMPLATE_FILE = "chat_template.jinja"

# Nothing from cookbook.client at import time: the HTTP client imports this module.
if TYPE_CHECKING:
    from cookbook.client.abstract import ServiceClient


def _special_token_text(value: Any) -> str | None:
    """tokenizer_config.json stores special tokens as a string or as {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _chat_template_text(value: Any, template_file: Path) -> str | None:
    """tokenizer_config.json's chat_template (a string, or named templates: "default"), else the file."""
    if isinstance(value, list):
        value = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}.get("default")
    if isinstance(value, str) and value:
        return value
    return template_file.read_text() if template_file.is_file() else None


class Tokenizer:
    """Text <-> token ids for one model, plus its special tokens."""

    def __init__(
        self,
        raw: _RawTokenizer,
        *,
        name_or_path: str = "",
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
        chat_template: str | None = None,
    ):
        self._raw = raw
        self.name_or_path = name_or_path
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.pad_token = pad_token
        self.chat_template = chat_template

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_json_str(
        cls,
        tokenizer_json: str,
        *,
        name_or_path: str = "",
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
        chat_template: str | None = None,
    ) -> Tokenizer:
        return cls(
            _RawTokenizer.from_str(tokenizer_json),
            name_or_path=name_or_path,
            bos_token=bos_token,
            eos_token=eos_token,
            pad_token=pad_token,
            chat_template=chat_template,
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> Tokenizer:
        """A Hugging Face model directory: tokenizer.json, plus tokenizer_config.json and chat_template.jinja if present."""
        path = Path(path)
        tokenizer_file = path / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"no tokenizer.json in {path}")
        config: dict[str, Any] = {}
        config_file = path / "tokenizer_config.json"
        if config_file.is_file():
            config = json.loads(config_file.read_text())
        return cls.from_json_str(
            tokenizer_file.read_text(),
            name_or_path=str(path),
            bos_token=_special_token_text(config.get("bos_token")),
            eos_token=_special_token_text(config.get("eos_token")),
            pad_token=_special_token_text(config.get("pad_token")),
            chat_template=_chat_template_text(config.get("chat_template"), path / _CHAT_TEMPLATE_FILE),
        )

    def to_json_str(self) -> str:
        return self._raw.to_str()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "json": self.to_json_str(),
            "name_or_path": self.name_or_path,
            "bos": self.bos_token,
            "eos": self.eos_token,
            "pad": self.pad_token,
            "chat_template": self.chat_template,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(
            _RawTokenizer.from_str(state["json"]),
            name_or_path=state["name_or_path"],
            bos_token=state["bos"],
            eos_token=state["eos"],
            pad_token=state["pad"],
            chat_template=state.get("chat_template"),
        )

    # -- text <-> ids ------------------------------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`. Special tokens (BOS...) are added only when asked."""
        return list(self._raw.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self._raw.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self._raw.token_to_id(token)

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str | None]:
        return [self._raw.id_to_token(i) for i in ids]

    @property
    def vocab_size(self) -> int:
        return self._raw.get_vocab_size(with_added_tokens=True)

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self._raw.token_to_id(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id(self.pad_token)

    @property
    def raw(self) -> _RawTokenizer:
        return self._raw


# -- finding a model's tokenizer -------------------------------------------------------------


class TokenizerNotFoundError(LookupError):
    """No tokenizer could be found for a model name."""


_registered: dict[str, Tokenizer] = {}
_cache: dict[str, Tokenizer] = {}
_lock = threading.Lock()


def register_tokenizer(name: str, tokenizer: Tokenizer) -> None:
    """Make `get_tokenizer(name)` return `tokenizer` (custom models, tests); replaces any earlier one."""
    with _lock:
        _registered[name] = tokenizer
        _cache.pop(name, None)


def find_tokenizer(model_name: str) -> Tokenizer | None:
    """The tokenizer available without a server: registered, cached, or a local directory.

    Callers use it to avoid connecting to a server when nothing needs to be fetched.
    """
    with _lock:
        found = _registered.get(model_name) or _cache.get(model_name)
    if found is not None:
        return found
    path = Path(model_name).expanduser()
    if not path.is_dir():
        return None
    if not (path / "tokenizer.json").is_file():
        raise TokenizerNotFoundError(
            f"{model_name!r} is a directory but has no tokenizer.json (a Hugging Face model directory "
            "needs tokenizer.json, plus tokenizer_config.json for its special tokens)"
        )
    return _remember(model_name, Tokenizer.from_dir(path))


def get_tokenizer(model_name: str, service_client: ServiceClient | None = None) -> Tokenizer:
    """A model's tokenizer: registered, a local Hugging Face directory, else fetched from the server.

    Cached per model name, so every dataset, renderer and evaluator of a run shares one object.
    """
    from cookbook.client.errors import APIStatusError

    found = find_tokenizer(model_name)
    if found is not None:
        return found
    if service_client is None:
        raise TokenizerNotFoundError(
            f"no tokenizer for {model_name!r}: it is neither a registered tokenizer nor a local directory "
            "with tokenizer.json, and no service client was given to fetch it from a server"
        )
    try:
        fetched = service_client.get_tokenizer(model_name)
    except APIStatusError as exc:
        raise TokenizerNotFoundError(
            f"no tokenizer for {model_name!r}: not registered, not a local directory, and the server "
            f"refused it ({exc})"
        ) from exc
    return _remember(model_name, fetched)


def _remember(model_name: str, tokenizer: Tokenizer) -> Tokenizer:
    """Cache `tokenizer` unless another thread got there first (then share that one)."""
    with _lock:
        return _cache.setdefault(model_name, tokenizer)
