"""Runs every ```python block of docs/writing-a-recipe.md, in order, against a real server.

The blocks share one module namespace, as they would in a reader's script or notebook; the
server is one started here and announced through COOKBOOK_BASE_URL, which the guide's
`connect()` honours. After the guide has run, a few of its variables are checked, so the
guide's claims (the loss falls, a recipe run logs test/nll and a final checkpoint) stay true.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from cookbook.client.local_server import LocalServer

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "writing-a-recipe.md"
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
MODULE_NAME = "writing_a_recipe_guide"


def python_blocks(markdown: str) -> list[str]:
    return [match.group(1) for match in _PYTHON_BLOCK.finditer(markdown)]


def test_python_blocks_are_found() -> None:
    text = "intro\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a + 1\n```\n"
    assert python_blocks(text) == ["a = 1\n", "b = a + 1\n"]


@pytest.fixture
def guide_module() -> Iterator[types.ModuleType]:
    """A real module (chz resolves annotations through sys.modules) for the guide's code."""
    module = types.ModuleType(MODULE_NAME)
    sys.modules[MODULE_NAME] = module
    yield module
    del sys.modules[MODULE_NAME]


def test_the_guide_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guide_module: types.ModuleType
) -> None:
    blocks = python_blocks(GUIDE.read_text(encoding="utf-8"))
    assert len(blocks) >= 8, "the guide lost its code"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COOKBOOK_API_KEY", raising=False)
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    with LocalServer(tmp_path / "server-storage") as server:
        monkeypatch.setenv("COOKBOOK_BASE_URL", server.url)
        namespace = guide_module.__dict__
        for number, code in enumerate(blocks, start=1):
            compiled = compile(code, f"{GUIDE.name} python block {number}", "exec")
            exec(compiled, namespace)

    losses = namespace["losses"]
    assert len(losses) == namespace["num_steps"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert namespace["test_nll"] < losses[0]
    assert namespace["termination"] is not None
    curve = namespace["test_curve"]
    assert sorted(curve) == [0, 10, 20] and curve[20] < curve[0]
    assert {"config.json", "metrics.jsonl", "checkpoints.jsonl", "metrics.png"} <= set(
        p.name for p in namespace["log_path"].iterdir()
    )
