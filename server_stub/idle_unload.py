"""Unloading what a gone client left: models and samplers of a finished or silent session.

The official SDK heartbeats its session every 10 s and finishes it when closed; a session that is
finished, or has not been heard from, for `timeout` seconds is gone. Its models and samplers that
were not used for as long are unloaded (models through the scheduler, after their queued calls);
their checkpoints stay. Models created outside any session are never unloaded here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from server_stub.sessions import SessionCounter, SessionRegistry


@dataclass
class IdleUnloader:
    sessions: SessionRegistry
    models: SessionCounter
    samplers: SessionCounter
    unload_model: Callable[[str], None]
    release_sampler: Callable[[str], None]
    timeout: float
    clock: Callable[[], float] = time.monotonic
    last_use: dict[str, float] = field(default_factory=dict)

    def touch(self, ident: str) -> None:
        self.last_use[ident] = self.clock()

    def _gone(self, key: Hashable, now: float) -> bool:
        session_id = key[1] if isinstance(key, tuple) and len(key) == 2 else None
        session = self.sessions.get(session_id) if isinstance(session_id, str) else None
        return session is not None and now - session.last_heartbeat >= self.timeout

    def _idle(self, ident: str, now: float) -> bool:
        return now - self.last_use.get(ident, float("-inf")) >= self.timeout

    def sweep(self) -> list[str]:
        """Unload every idle model and sampler of a gone session; returns their ids."""
        now = self.clock()
        done: list[str] = []
        for counter, unload in ((self.models, self.unload_model), (self.samplers, self.release_sampler)):
            for key in counter.sessions():
                if not self._gone(key, now):
                    continue
                for ident in sorted(counter.members(key)):
                    if self._idle(ident, now):
                        counter.discard(ident)
                        self.last_use.pop(ident, None)
                        unload(ident)
                        done.append(ident)
        return done
