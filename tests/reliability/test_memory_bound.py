"""A training pass holds one chunk's activations at a time: memory follows the chunk, not the request.

Measured in a fresh process (peak RSS is per process): a warm-up request of one chunk sets the
peak, then a request of 32 times as many tokens runs through the same engine; the peak may rise
by at most GROWTH_BOUND_MB (its own inputs and per-token outputs). A pass that ran every chunk's
forward before any backward would hold all 32 chunks' activations, several times the bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GROWTH_BOUND_MB = 150
DATUM_TOKENS = 500

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from cookbook.client import types
    from server_stub.torch_engine import TorchEngine

    storage, datums, tokens, pass_tokens = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    engine = TorchEngine(storage, device="cpu", max_pass_tokens=pass_tokens)
    engine.create_model("run-memory", "tiny-llama", types.LoraConfig(rank=8), None)

    def request(count):
        ids = [1 + i % 200 for i in range(tokens)]
        datum = {
            "model_input": {"chunks": [{"tokens": ids, "type": "encoded_text"}]},
            "loss_fn_inputs": {
                "target_tokens": {"data": ids, "dtype": "int64", "shape": [tokens]},
                "weights": {"data": [1.0] * tokens, "dtype": "float32", "shape": [tokens]},
            },
        }
        return types.ForwardBackwardInput.model_validate({"data": [datum] * count, "loss_fn": "cross_entropy"})

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    engine.forward_backward("run-memory", request(1), backward=True)
    large = request(datums)
    before = peak_mb()
    engine.forward_backward("run-memory", large, backward=True)
    print(json.dumps({"growth_mb": peak_mb() - before}))
    """
)


@pytest.mark.slow
def test_peak_memory_of_a_large_training_request_follows_the_chunk_size(tmp_path: Path) -> None:
    chunk = DATUM_TOKENS  # one datum per chunk: the request below is 32 chunks
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), "32", str(DATUM_TOKENS), str(chunk)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    growth = json.loads(done.stdout.strip().splitlines()[-1])["growth_mb"]
    assert growth <= GROWTH_BOUND_MB, f"peak RSS grew {growth:.0f} MB on a 32-chunk request"
