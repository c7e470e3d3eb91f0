"""The server's OpenMP wait policy and MKL mode are in place before torch loads; a user's own choice wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from server_stub.device import OPENMP_SPIN_COUNT, THREAD_INDEPENDENT_MATMULS

REPO_ROOT = Path(__file__).resolve().parents[3]

# Records the variables at the moment `torch` is first imported, then imports `module`.
_PROBE = """
import importlib, importlib.abc, json, os, sys
seen = {}
class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.update(GOMP_SPINCOUNT=os.environ.get("GOMP_SPINCOUNT"),
                        OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY"),
                        MKL_CBWR=os.environ.get("MKL_CBWR"))
        return None
sys.meta_path.insert(0, Probe())
importlib.import_module(sys.argv[1])
print(json.dumps(seen))
"""


def _policy_when_torch_loads(module: str, **env: str) -> dict[str, str | None]:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_CBWR")
    }
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        env={**clean, **env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen, f"importing {module} never imported torch"
    return seen


def test_the_server_spins_briefly_before_torch_loads() -> None:
    # The engine pulls in transformers (and so torch) through its imports: the policy
    # has to be set by the package itself, before any of its modules runs.
    seen = _policy_when_torch_loads("server_stub.torch_engine")
    assert seen == {
        "GOMP_SPINCOUNT": OPENMP_SPIN_COUNT,
        "OMP_WAIT_POLICY": None,
        "MKL_CBWR": THREAD_INDEPENDENT_MATMULS,
    }


def test_a_wait_policy_the_user_set_is_kept() -> None:
    seen = _policy_when_torch_loads("server_stub.torch_engine", OMP_WAIT_POLICY="PASSIVE")
    assert seen == {
        "GOMP_SPINCOUNT": None,
        "OMP_WAIT_POLICY": "PASSIVE",
        "MKL_CBWR": THREAD_INDEPENDENT_MATMULS,
    }


def test_a_spin_count_the_user_set_is_kept() -> None:
    seen = _policy_when_torch_loads("server_stub.torch_engine", GOMP_SPINCOUNT="50")
    assert seen["GOMP_SPINCOUNT"] == "50" and seen["OMP_WAIT_POLICY"] is None


def test_a_mkl_mode_the_user_set_is_kept() -> None:
    seen = _policy_when_torch_loads("server_stub.torch_engine", MKL_CBWR="AVX2")
    assert seen["MKL_CBWR"] == "AVX2"
