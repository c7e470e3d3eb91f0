"""Client sessions, and what each session already asked for (so retried POSTs are idempotent).

A client (the official SDK or ours) opens one session per ServiceClient, heartbeats it, and (SDK
0.38+) finishes it when closed; a finished session creates no more models or samplers. Its
create_model / create_sampling_session calls carry (session_id, per-session seq id); a retried
POST with the same pair must not create a second model or sampler, so the registry remembers the
answer for each pair (bounded: the oldest records go first).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from server_stub.engine import NotFoundError, UserError


@dataclass
class Session:
    session_id: str
    sdk_version: str
    tags: list[str]
    user_metadata: dict[str, Any] | None
    created: float
    last_heartbeat: float
    finished: tuple[str, str | None] | None = None  # (reason, detail), set once


class SessionRegistry:
    """Known sessions and a bounded memory of per-session requests already answered."""

    def __init__(
        self,
        max_records: int = 10_000,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # least recently seen first
        self._max_sessions = max_sessions
        self._records: OrderedDict[Hashable, Any] = OrderedDict()
        self._max_records = max_records
        self._clock = clock

    def create(
        self,
        sdk_version: str = "unknown",
        tags: list[str] | None = None,
        user_metadata: dict[str, Any] | None = None,
    ) -> Session:
        now = self._clock()
        session = Session(
            f"session-{uuid.uuid4().hex}", sdk_version, list(tags or []), user_metadata, now, now
        )
        self._sessions[session.session_id] = session
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        return session

    def heartbeat(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise NotFoundError(
                f"unknown session {session_id!r} (the server may have restarted)", field="session_id"
            )
        session.last_heartbeat = self._clock()
        self._sessions.move_to_end(session_id)
        return session

    def finish(self, session_id: str, reason: str, detail: str | None) -> tuple[str, str | None]:
        """Mark the session done; a later finish keeps the first (reason, detail), the SDK's rule."""
        session = self.heartbeat(session_id)
        if session.finished is None:
            session.finished = (reason, detail)
        return session.finished

    def check_open(self, session_id: str | None) -> None:
        """Refuse new work under a finished session; ids this server never issued pass, as they always have."""
        session = self._sessions.get(session_id) if session_id is not None else None
        if session is not None and session.finished is not None:
            raise UserError(
                f"session {session_id!r} is finished ({session.finished[0]}); open a new session",
                field="session_id",
            )

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def recall(self, key: Hashable) -> Any | None:
        """What was answered for `key` (e.g. ("create_model", session_id, model_seq_id)), if anything."""
        return self._records.get(key)

    def remember(self, key: Hashable, value: Any) -> None:
        self._records[key] = value
        self._records.move_to_end(key)
        while len(self._records) > self._max_records:
            self._records.popitem(last=False)

    def forget(self, key: Hashable) -> None:
        self._records.pop(key, None)

    def __len__(self) -> int:
        return len(self._sessions)


class SessionCounter:
    """Live things (models or samplers) per (owner, session): a client session may hold at most `limit`.

    Thread-safe: samplers made by save_weights_for_sampler are counted from the compute thread."""

    def __init__(self, setting: str, limit: int) -> None:
        self._setting = setting
        self.limit = limit
        self._members: dict[Hashable, dict[str, None]] = {}  # in the order they were added
        self._key_of: dict[str, Hashable] = {}
        self._lock = threading.Lock()

    def check(self, key: Hashable) -> None:
        with self._lock:
            held = len(self._members.get(key, ()))
        if held >= self.limit:
            flag = "--" + self._setting.replace("_", "-")
            raise UserError(
                f"this session already holds {held} of at most {self.limit} ({flag}); "
                "unload one or open a new session",
                field="session_id",
            )

    def add(self, key: Hashable, member: str) -> list[str]:
        """Count `member` under `key`; returns the oldest members past the limit (now uncounted)."""
        with self._lock:
            members = self._members.setdefault(key, {})
            members[member] = None
            self._key_of[member] = key
            evicted = list(members)[: max(len(members) - self.limit, 0)]
            for old in evicted:
                del members[old]
                del self._key_of[old]
            return evicted

    def discard(self, member: str) -> None:
        with self._lock:
            key = self._key_of.pop(member, None)
            if key is not None:
                self._members.get(key, {}).pop(member, None)

    def session_of(self, member: str) -> Hashable | None:
        with self._lock:
            return self._key_of.get(member)

    def sessions(self) -> list[Hashable]:
        with self._lock:
            return [key for key, members in self._members.items() if members]

    def members(self, key: Hashable) -> set[str]:
        with self._lock:
            return set(self._members.get(key, ()))
