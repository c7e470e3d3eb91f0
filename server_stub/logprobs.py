"""Log-probabilities from logits, always in fp32, shared by training and sampling.

Training and sampling must report the same logprob for the same token (RL importance ratios and
KL metrics compare them), so both go through this one function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def gather_logprobs(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[..., index] in fp32; `index` has the leading shape of `logits` and any last dim."""
    import torch

    logits = logits.float()
    return logits.gather(-1, index) - torch.logsumexp(logits, dim=-1, keepdim=True)


def topk_logprobs(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `k` largest fp32 logprobs along the last dim of `logits` (descending) and their token ids."""
    import torch

    logits = logits.float()
    values, ids = logits.topk(k, dim=-1)
    return values - torch.logsumexp(logits, dim=-1, keepdim=True), ids
