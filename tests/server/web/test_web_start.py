"""What `python -m server_stub` does between building the engine and serving it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from server_stub import __main__ as server_main


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Whatever the test freezes goes back to the collector afterwards."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_start_up_objects_are_frozen_before_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    frozen_at_serve: list[int] = []
    monkeypatch.setattr(
        server_main._AnnouncingServer, "run", lambda self: frozen_at_serve.append(gc.get_freeze_count())
    )
    assert gc.get_freeze_count() == 0
    server_main.main(["--port", "0", "--storage", str(tmp_path), "--log-level", "warning"])
    # Full collections then skip the engine, the app and the models.
    assert frozen_at_serve and frozen_at_serve[0] > 50_000
