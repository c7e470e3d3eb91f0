"""Turns within a sampling run: waiting training calls run between its decode steps, or beside its decode.

Sampling a batch decodes token after token for up to thousands of steps; training calls queued
meanwhile would wait for all of them. The scheduler installs a hook for the duration of a sampling
run (`turns_for`), and the decoding loop offers it a turn after each step (`offer_turn`). The hook
runs waiting training calls on the same thread, as long as they have not used more of the compute
than sampling has since it started (see `Scheduler`). The hook is per thread: an engine driven
without a scheduler never gives turns. What training needs and sampling does not (autograd, the
process's thread count) is set up by the offer's `setup`, entered only when a call does run.

A decoding loop that reads nothing but its own weight copies and cache (the lean decode step) can
do better than take turns: inside `decode_beside()` it holds nothing the other calls touch, so the
scheduler lets them run at the same time, on the other cores, and offers no turns meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

_current = threading.local()
_NOT_BESIDE = contextlib.nullcontext(False)

TurnSetup = Callable[[], AbstractContextManager[object]]
"""Entered around the calls of a turn that runs some; not entered when none is waiting."""


@contextlib.contextmanager
def _installed(name: str, hook: object) -> Iterator[None]:
    """This thread's hook `name` is `hook` while inside, the one before after."""
    previous = getattr(_current, name, None)
    setattr(_current, name, hook)
    try:
        yield
    finally:
        setattr(_current, name, previous)


def turns_for(hook: Callable[[TurnSetup], bool]) -> AbstractContextManager[None]:
    """While inside, `offer_turn` on this thread calls `hook` (which says whether it ran anything)."""
    return _installed("turn", hook)


def offer_turn(setup: TurnSetup = contextlib.nullcontext) -> bool:
    """Let waiting work run now, inside `setup`; True when some did (the caller re-activates the weights
    it samples)."""
    hook: Callable[[TurnSetup], bool] | None = getattr(_current, "turn", None)
    return hook is not None and hook(setup)


def beside_for(hook: Callable[[], AbstractContextManager[bool]] | None) -> AbstractContextManager[None]:
    """While inside, `decode_beside` on this thread enters `hook()` (None: other work never runs beside)."""
    return _installed("beside", hook)


def decode_beside() -> AbstractContextManager[bool]:
    """Entered around a decoding loop that touches no shared module state; it yields True when other
    work may run meanwhile (the loop then offers no turns: that work is not waiting for them)."""
    hook: Callable[[], AbstractContextManager[bool]] | None = getattr(_current, "beside", None)
    return _NOT_BESIDE if hook is None else hook()
