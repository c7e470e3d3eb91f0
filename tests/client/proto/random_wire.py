"""Random wire objects for round-trip tests (float values are float32-exact, as the wire carries)."""

from __future__ import annotations

import numpy as np

from cookbook.client import types


def floats(rng: np.random.Generator, n: int) -> list[float]:
    return rng.normal(size=n).astype(np.float32).tolist()


def sparse_tensor(
    rng: np.random.Generator, rows: int, cols: int, dtype: types.TensorDtype
) -> types.TensorData:
    """A CSR tensor with a random pattern (some rows empty)."""
    mask = rng.random((rows, cols)) < 0.3
    crow = np.concatenate(([0], np.cumsum(mask.sum(axis=1)))).tolist()
    col = np.nonzero(mask)[1].tolist()
    nnz = len(col)
    data = rng.integers(-5, 5, nnz).tolist() if dtype == "int64" else floats(rng, nnz)
    return types.TensorData(
        data=data, dtype=dtype, shape=[rows, cols], sparse_crow_indices=crow, sparse_col_indices=col
    )


def datum(rng: np.random.Generator, loss_fn: str) -> types.Datum:
    """A datum with 0-3 token chunks (some empty) and loss inputs of every layout the wire carries."""
    chunks = [
        rng.integers(0, 2**31 - 1, int(rng.integers(0, 6))).tolist() for _ in range(int(rng.integers(0, 4)))
    ]
    length = sum(len(c) for c in chunks)
    inputs: dict[str, types.TensorData] = {
        "weights": types.TensorData(data=floats(rng, length), dtype="float32", shape=[length]),
    }
    if loss_fn == "cross_entropy" and rng.random() < 0.5:
        k = int(rng.integers(1, 4))  # several target tokens per position, [N, K]
        targets = rng.integers(0, 1000, (length, k))
        inputs["target_tokens"] = types.TensorData(
            data=targets.reshape(-1).tolist(), dtype="int64", shape=[length, k]
        )
        inputs["weights"] = sparse_tensor(rng, length, k, "float32")
    else:
        inputs["target_tokens"] = types.TensorData(
            data=rng.integers(-(2**62), 2**62, length).tolist(), dtype="int64"
        )
    if loss_fn != "cross_entropy":
        inputs["logprobs"] = types.TensorData(data=floats(rng, length), dtype="float32", shape=[length])
        inputs["advantages"] = sparse_tensor(rng, 1, length, "float32") if length else inputs["logprobs"]
    if rng.random() < 0.3:
        inputs["mask"] = sparse_tensor(rng, 2, 3, "int64")
    return types.Datum(
        model_input=types.ModelInput(chunks=[types.EncodedTextChunk(tokens=c) for c in chunks]),
        loss_fn_inputs=inputs,
    )


def forward_backward_request(rng: np.random.Generator) -> types.ForwardBackwardRequest:
    loss_fn = str(rng.choice(types.LOSS_FN_NAMES))
    config = {"clip_low_threshold": 0.75, "clip_high_threshold": 1.25} if rng.random() < 0.5 else None
    data = [datum(rng, loss_fn) for _ in range(int(rng.integers(0, 5)))]
    fwd = types.ForwardBackwardInput(data=data, loss_fn=loss_fn, loss_fn_config=config)
    return types.ForwardBackwardRequest(
        forward_backward_input=fwd,
        model_id=f"sess:train:{rng.integers(0, 9)}",
        seq_id=int(rng.integers(1, 2**31 - 1)),
    )


def forward_backward_output(rng: np.random.Generator) -> types.ForwardBackwardOutput:
    """Per-datum outputs: ragged lengths, an optional 2-D field whose trailing dim changes mid-batch."""
    outputs = []
    k = int(rng.integers(1, 4))
    for d in range(int(rng.integers(0, 6))):
        n = int(rng.integers(0, 7))
        fields = {"logprobs": types.TensorData(data=floats(rng, n), dtype="float32", shape=[n])}
        if d >= 2:
            k = 1 if d == 3 else k  # a change of trailing dim starts a new record
        fields["topk_ids"] = types.TensorData(
            data=rng.integers(0, 50, n * k).tolist(), dtype="int64", shape=[n, k]
        )
        outputs.append(fields)
    metrics = {"loss:sum": float(rng.normal()), "ntokens:sum": float(rng.integers(0, 100))}
    return types.ForwardBackwardOutput(loss_fn_outputs=outputs, metrics=metrics)


def sample_response(rng: np.random.Generator) -> types.SampleResponse:
    sequences = [
        types.SampledSequence(
            stop_reason=str(rng.choice(["stop", "length"])),
            tokens=rng.integers(0, 2**31 - 1, n).tolist(),
            logprobs=floats(rng, n) if rng.random() < 0.7 else None,
        )
        for n in rng.integers(0, 6, int(rng.integers(0, 4))).tolist()
    ]
    prompt_length = int(rng.integers(0, 6))
    prompt_logprobs = None
    topk = None
    if rng.random() < 0.6:
        prompt_logprobs = [None, *floats(rng, max(prompt_length - 1, 0))][:prompt_length]
    if rng.random() < 0.6:
        k = int(rng.integers(1, 4))
        topk = [None] + [
            list(zip(rng.integers(1, 100, m).tolist(), floats(rng, m), strict=True))
            for m in rng.integers(1, k + 1, max(prompt_length - 1, 0)).tolist()
        ]
        topk = topk[:prompt_length]
    return types.SampleResponse(
        sequences=sequences,
        prompt_logprobs=prompt_logprobs,
        topk_prompt_logprobs=topk,
        prompt_cache_hit_tokens=int(rng.integers(0, 10)),
    )
