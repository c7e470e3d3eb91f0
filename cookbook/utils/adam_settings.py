"""The AdamW settings of one optimizer step, from a training config's optimizer fields.

The SFT, DPO and RL configs all carry adam_beta1, adam_beta2, adam_eps, weight_decay and
grad_clip_norm; every step sends them together with that step's scheduled learning rate.
"""

from __future__ import annotations

from typing import Protocol

from cookbook.client.types import AdamParams


class AdamFields(Protocol):
    """The optimizer fields a training config declares."""

    @property
    def adam_beta1(self) -> float: ...
    @property
    def adam_beta2(self) -> float: ...
    @property
    def adam_eps(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def grad_clip_norm(self) -> float: ...


def adam_params_for(config: AdamFields, learning_rate: float) -> AdamParams:
    """The step's AdamParams: `config`'s optimizer fields at `learning_rate`."""
    return AdamParams(learning_rate=learning_rate, beta1=config.adam_beta1, beta2=config.adam_beta2,
                      eps=config.adam_eps, weight_decay=config.weight_decay, grad_clip_norm=config.grad_clip_norm)
