"""glibc's mmap threshold is fixed at server start, unless the user set one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from server_stub import native_memory


def _in_fresh_process(env_extra: dict[str, str]) -> str:
    code = "from server_stub.native_memory import map_large_blocks; print(map_large_blocks())"
    env = {k: v for k, v in os.environ.items() if k != native_memory.USER_SETTING}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**env, **env_extra}, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_the_threshold_is_set_on_glibc_and_the_users_own_setting_wins() -> None:
    assert _in_fresh_process({}) == "True"
    assert _in_fresh_process({native_memory.USER_SETTING: "131072"}) == "False"
