"""Data and comparisons shared by the integration tests against the real server."""

from __future__ import annotations

import numpy as np

from cookbook.client import TrainingClient, types
from cookbook.tokenizer_utils import Tokenizer

BASE_MODEL = "tiny-llama"
TEXTS = [
    "User: What is the capital of France?\n\nAssistant: Sure! The capital of France is Paris.\n\n",
    "User: What is two plus three?\n\nAssistant: Two plus three is five.\n\n",
    "User: Name a red fruit.\n\nAssistant: Of course! An apple is red.\n\n",
    "User: What is the opposite of hot?\n\nAssistant: The opposite of hot is cold.\n\n",
    "User: List three colors.\n\nAssistant: 1. red 2. green 3. blue\n\n",
    "User: Say hello.\n\nAssistant: Hello! Happy to help!\n\n",
]
PROBE = "User: What is the capital of Italy?\n\nAssistant: The capital of Italy is Rome.\n\n"


def text_datum(tokenizer: Tokenizer, text: str, scale: float = 1.0) -> types.Datum:
    ids = tokenizer.encode(text)
    return types.Datum(
        model_input=types.ModelInput.from_ints(ids[:-1]),
        loss_fn_inputs={"target_tokens": ids[1:], "weights": [scale] * (len(ids) - 1)},
    )


def batches(tokenizer: Tokenizer, n_steps: int, size: int = 2) -> list[list[types.Datum]]:
    """Deterministic, different batches per step."""
    return [
        [text_datum(tokenizer, TEXTS[(step * size + i) % len(TEXTS)]) for i in range(size)]
        for step in range(n_steps)
    ]


def probe_logprobs(tc: TrainingClient, tokenizer: Tokenizer) -> np.ndarray:
    """The model's logprobs on fixed text: a fingerprint of its weights (forward adds no grads)."""
    data = [text_datum(tokenizer, PROBE), text_datum(tokenizer, TEXTS[0])]
    out = tc.forward(data, "cross_entropy").result()
    return np.concatenate([o["logprobs"].to_numpy() for o in out.loss_fn_outputs])


def linear_adam(lr: float = 1e-2) -> types.AdamParams:
    """Adam with a huge eps: the update is ~lr * grad, so equal gradients give equal weights
    without Adam's sign-like first step amplifying float noise in near-zero gradients."""
    return types.AdamParams(learning_rate=lr, eps=1.0)
