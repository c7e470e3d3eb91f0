"""The five built-in losses (reference §3): token-level terms summed over every position, no normalisation.

Each function maps the learner's target logprobs `lp` and the batch's inputs to the per-token
loss terms; `total_loss` sums the terms over real positions only. `lq` is the sampler's logprob
(`logprobs` input) and `A` the advantage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from server_stub.training.batch import TrainBatch

LossTerms = Callable[["torch.Tensor", "TrainBatch"], "torch.Tensor"]

# Settings a request may override through loss_fn_config (reference §3 defaults).
LOSS_CONFIG_DEFAULTS: dict[str, dict[str, float]] = {
    "ppo": {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2},
    "cispo": {"clip_low_threshold": 0.0, "clip_high_threshold": 4.0},
    "dro": {"beta": 0.05},
}


def _ratio(lp: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
    import torch

    return torch.exp(lp - batch.inputs["logprobs"])


def cross_entropy(lp: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
    """-w * lp; weights may be any real number (forward_backward_custom sends -dL/dlogp)."""
    return -batch.inputs["weights"] * lp


def importance_sampling(lp: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
    """-(p/q) * A: REINFORCE corrected for sampling from q, ratio unclipped."""
    return -_ratio(lp, batch) * batch.inputs["advantages"]


def ppo(lp: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
    """-min(r * A, clip(r, lo, hi) * A) with absolute ratio bounds lo/hi."""
    import torch

    ratio, adv = _ratio(lp, batch), batch.inputs["advantages"]
    clipped = torch.clamp(ratio, batch.inputs["clip_low_threshold"], batch.inputs["clip_high_threshold"])
    return -torch.minimum(ratio * adv, clipped * adv)


def cispo(lp: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
    """-sg(clip(r, lo, hi)) * lp * A: the clipped ratio is a constant coefficient."""
    import torch

    ratio = _ratio(lp, batch).detach()
    clipped = torch.clamp(ratio, batch.inputs["clip_low_threshold"], batch.inputs["clip_high_threshold"])
    return -clipped * lp * batch.inputs["advantages"]


def dro(lp: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
    """-(lp * A - beta/2 * (lp - lq)^2); the quadratic term skips placeholder positions (A == 0 and lq == 0)."""
    adv, lq = batch.inputs["advantages"], batch.inputs["logprobs"]
    real = (adv != 0) | (lq != 0)
    return -(lp * adv - 0.5 * batch.config["beta"] * (lp - lq).square() * real)


LOSS_TERMS: dict[str, LossTerms] = {
    "cross_entropy": cross_entropy, "importance_sampling": importance_sampling, "ppo": ppo,
    "cispo": cispo, "dro": dro,
}


def total_loss(loss_fn: str, lp: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
    """The scalar sum of `loss_fn`'s terms over real (datum, position, target) entries."""
    import torch

    terms = LOSS_TERMS[loss_fn](lp, batch)
    return torch.where(batch.valid, terms, torch.zeros_like(terms)).sum()
