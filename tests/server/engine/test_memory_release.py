"""Freed heap memory goes back to the OS where the C library is glibc, and nothing happens elsewhere."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from server_stub import memory_release, torch_engine
from server_stub.torch_engine import TorchEngine

from .engine_helpers import TINY, fwd, sft_datum

ON_GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not ON_GLIBC, reason="the glibc path needs glibc")
def test_on_glibc_the_heap_is_trimmed() -> None:
    assert memory_release._glibc() is not None
    block = bytearray(64 * 1024 * 1024)  # freed below: a trim has something to give back
    del block
    assert isinstance(memory_release.release_free_memory(), bool)


def test_without_glibc_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_release, "_glibc", lambda: None)
    assert memory_release.release_free_memory() is False


def test_a_large_training_pass_releases_and_a_small_one_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    released: list[bool] = []
    monkeypatch.setattr(torch_engine, "release_free_memory", lambda: released.append(True) or True)
    engine = TorchEngine(tmp_path, device="cpu")
    engine.create_model("m", TINY, None, None)
    data = [sft_datum([(3 * j) % 250 + 1 for j in range(40)])]
    engine.forward_backward("m", fwd(data), backward=True)
    assert released == []  # 40 tokens of the built-in model: far below the threshold
    monkeypatch.setattr(torch_engine, "RELEASE_AFTER_BYTES", 1)
    engine.forward_backward("m", fwd(data), backward=False)
    assert released == []  # inference passes keep no activations
    engine.forward_backward("m", fwd(data), backward=True)
    assert released == [True]
