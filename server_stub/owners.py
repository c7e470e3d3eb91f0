"""Who owns what: every run (= training model), sampler, session and future belongs to one tenant.

A tenant is who presented an API key (`keys.py`); without keys every request is the one tenant
`DEFAULT_OWNER`. A tenant sees only its own ids: another tenant's id answers exactly like an id
that does not exist (`unknown` builds the engine's own answer for one), so answers never tell which
ids exist. A checkpoint its owner published is readable (never writable) by every tenant.

Runs and published checkpoints outlive the process, so their records are kept in a JSON file in
the storage dir; a run found on disk with no record (written before owners were recorded) belongs
to `DEFAULT_OWNER`. Samplers, sessions and futures live only as long as the process.
"""

from __future__ import annotations

import contextvars
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

from cookbook.client import types
from server_stub.engine import Engine, NotFoundError
from server_stub.futures_store import UnknownRequestError
from server_stub.storage.json_files import write_json_atomic

DEFAULT_OWNER = "default"
OWNERS_FILE = "owners.json"
MAX_TRANSIENT_RECORDS = 1_000_000  # futures and samplers older than this many are long gone anyway

current_owner: contextvars.ContextVar[str] = contextvars.ContextVar("current_owner", default=DEFAULT_OWNER)
"""The tenant of the request being served; set by the auth middleware for each request."""


class Kind(Enum):
    RUN = "run"
    SAMPLER = "sampler"
    SESSION = "session"
    FUTURE = "future"


def unknown(kind: Kind, ident: str) -> NotFoundError:
    """The answer for an id that does not exist, and so for one that belongs to someone else."""
    if kind is Kind.RUN:
        return NotFoundError(f"unknown model {ident!r}", field="model_id")
    if kind is Kind.SAMPLER:
        return NotFoundError(f"unknown sampler {ident!r}", field="sampling_session_id")
    if kind is Kind.SESSION:
        return NotFoundError(f"unknown session {ident!r} (the server may have restarted)", field="session_id")
    return NotFoundError(str(UnknownRequestError(ident, expired=False)), field="request_id")


def unknown_run(run_id: str) -> NotFoundError:
    """As the engine answers a run id it has never seen."""
    return NotFoundError(f"training run {run_id!r} not found", field="run_id")


def unknown_checkpoint(tinker_path: str, field: str) -> NotFoundError:
    return NotFoundError(f"checkpoint {tinker_path} not found", field=field)


class OwnerRegistry:
    """Owner records by (kind, id); thread-safe; runs and published paths persist in `path`."""

    def __init__(self, path: Path | None, run_exists: Callable[[str], bool]) -> None:
        self._path = path
        self._run_exists = run_exists
        self._lock = threading.Lock()
        self._runs: dict[str, str] = {}
        self._published: set[str] = set()
        self._transient: OrderedDict[tuple[Kind, str], str] = OrderedDict()
        if path is not None and path.is_file():
            saved = json.loads(path.read_text())
            self._runs = {str(k): str(v) for k, v in saved.get("runs", {}).items()}
            self._published = {str(p) for p in saved.get("published", [])}

    def _save(self) -> None:
        if self._path is not None:
            payload = {"runs": self._runs, "published": sorted(self._published)}
            write_json_atomic(self._path, payload)

    def record(self, kind: Kind, ident: str, owner: str) -> None:
        with self._lock:
            if kind is Kind.RUN:
                self._runs[ident] = owner
                self._save()
                return
            self._transient[(kind, ident)] = owner
            while len(self._transient) > MAX_TRANSIENT_RECORDS:
                self._transient.popitem(last=False)

    def owner_of(self, kind: Kind, ident: str) -> str | None:
        with self._lock:
            if kind is not Kind.RUN:
                return self._transient.get((kind, ident))
            owner = self._runs.get(ident)
        if owner is None and self._run_exists(ident):
            return DEFAULT_OWNER
        return owner

    def owns(self, kind: Kind, ident: str, owner: str | None = None) -> bool:
        return self.owner_of(kind, ident) == (owner or current_owner.get())

    def foreign(self, kind: Kind, ident: str, owner: str | None = None) -> bool:
        """Someone else's id (an id nobody owns is not foreign: it is unknown, and answered as such)."""
        found = self.owner_of(kind, ident)
        return found is not None and found != (owner or current_owner.get())

    def check(self, kind: Kind, ident: str, owner: str | None = None) -> str:
        """`ident` unless it is someone else's: then the same NotFoundError an unknown id gets."""
        if self.foreign(kind, ident, owner):
            raise unknown(kind, ident)
        return ident

    def runs_of(self, owner: str) -> list[str]:
        with self._lock:
            return [run for run, who in self._runs.items() if who == owner]

    # -- checkpoints -------------------------------------------------------------------------

    def check_readable(self, tinker_path: str, field: str) -> None:
        """A checkpoint the caller owns or one published; else as if it did not exist."""
        run_id = _run_of(tinker_path)
        if run_id is None or not self.foreign(Kind.RUN, run_id):
            return  # unknown or malformed: the engine or the parser answers it
        with self._lock:
            if tinker_path in self._published:
                return
        raise unknown_checkpoint(tinker_path, field)

    def is_published(self, tinker_path: str) -> bool:
        with self._lock:
            return tinker_path in self._published

    def set_published(self, tinker_path: str, published: bool) -> bool:
        """Publish or unpublish; False when it already was in that state."""
        with self._lock:
            if (tinker_path in self._published) == published:
                return False
            if published:
                self._published.add(tinker_path)
            else:
                self._published.discard(tinker_path)
            self._save()
            return True


def _run_of(tinker_path: str) -> str | None:
    if not tinker_path.startswith(types.TINKER_SCHEME):
        return None
    run_id = tinker_path[len(types.TINKER_SCHEME) :].split("/", 1)[0]
    return run_id or None


class OwnedCheckpointsEngine:
    """`engine` as one tenant may see it: another's unpublished checkpoint has no weights_info.

    Handed to routers that resolve checkpoint paths themselves (the OpenAI routes)."""

    def __init__(self, engine: Engine, owners: OwnerRegistry) -> None:
        self._engine = engine
        self._owners = owners

    def weights_info(self, tinker_path: str) -> types.WeightsInfoResponse:
        self._owners.check_readable(tinker_path, "tinker_path")
        return self._engine.weights_info(tinker_path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)
