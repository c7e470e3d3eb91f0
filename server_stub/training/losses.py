"""The built-in losses (reference §3) and the loss table: token-level terms summed over every position.

Each token loss maps the learner's target logprobs `lp` and the batch's inputs to the per-token
loss terms; `total_loss` sums the terms over real positions only. `lq` is the sampler's logprob
(`logprobs` input) and `A` the advantage. Score losses (our reward-head extension) read instead
the reward head's one score per datum, `r`. `LOSSES` is the one table of losses: the server's
request validation, batching and loss dispatch all read it. Adding a loss is one function and one
row here, and its name in the client's `LossFnType` (cookbook/client/types.py), which
tests/server/engine/test_engine_loss_table.py checks against this table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from server_stub.training.batch import TrainBatch

LossTerms = Callable[["torch.Tensor", "TrainBatch"], "torch.Tensor"]
ScoreTerms = Callable[["torch.Tensor", Mapping[str, float]], "torch.Tensor"]

TARGET_INPUT = "target_tokens"
"""The int64 input every loss reads: the token whose logprob `lp` is, per position (and per target)."""
PER_TARGET_INPUTS: tuple[str, ...] = ("weights",)
"""Float inputs shaped like target_tokens; every other float input holds one value per position."""


@dataclass(frozen=True)
class Loss:
    """One row of the loss table: a loss's terms and what a request must and may send it."""

    name: str
    terms: LossTerms
    required_inputs: tuple[str, ...]
    # Per-token inputs a datum may add; where absent, the loss_fn_config setting of the same name applies.
    optional_inputs: tuple[str, ...] = ()
    # The settings loss_fn_config may override, with their defaults.
    config_defaults: Mapping[str, float] = field(default_factory=dict)
    # target_tokens (and the per-target inputs) may be [N, K]: K targets per position.
    multi_target: bool = False
    # The input whose zero entries give the loss no gradient there (None: no one input does).
    gradient_input: str | None = None

    def __post_init__(self) -> None:
        if TARGET_INPUT not in self.required_inputs:
            raise ValueError(f"loss {self.name}: every loss reads {TARGET_INPUT}")
        if unset := [key for key in self.optional_inputs if key not in self.config_defaults]:
            raise ValueError(f"loss {self.name}: optional inputs {unset} need a default in config_defaults")
        if self.gradient_input not in (None, *self.required_inputs):
            raise ValueError(
                f"loss {self.name}: gradient_input {self.gradient_input} is not a required input"
            )

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every loss_fn_inputs key a datum may carry: the required ones, then the optional ones."""
        return (*self.required_inputs, *self.optional_inputs)


@dataclass(frozen=True)
class ScoreLoss:
    """One row of the loss table for a model with a reward head: a loss on each datum's score.

    Datums carry no loss_fn_inputs; `paired` losses read them as consecutive [chosen, rejected] pairs.
    """

    name: str
    terms: ScoreTerms  # scores [B] and the settings -> the scalar loss
    paired: bool
    forward_only: bool = False  # a score read-out: forward_backward is refused
    config_defaults: Mapping[str, float] = field(default_factory=dict)
    required_inputs: tuple[str, ...] = ()
    optional_inputs: tuple[str, ...] = ()
    multi_target: bool = False

    @property
    def inputs(self) -> tuple[str, ...]:
        return ()


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


def bradley_terry(r: torch.Tensor, config: Mapping[str, float]) -> torch.Tensor:
    """Σ_pairs -log σ(r_c - r_r - margin) + centering_coef * (r_c + r_r)²: datums 2i (chosen), 2i+1 (rejected)."""
    import torch

    chosen, rejected = r[0::2], r[1::2]
    fit = -torch.nn.functional.logsigmoid(chosen - rejected - config["margin"]).sum()
    return fit + config["centering_coef"] * (chosen + rejected).square().sum()


def reward_score(r: torch.Tensor, config: Mapping[str, float]) -> torch.Tensor:
    """No loss: a forward that reads one score per datum."""
    return r.sum() * 0.0


_POLICY_INPUTS = (TARGET_INPUT, "logprobs", "advantages")
_CLIP_INPUTS = ("clip_low_threshold", "clip_high_threshold")

LOSSES: dict[str, Loss | ScoreLoss] = {
    loss.name: loss
    for loss in (
        Loss(
            "cross_entropy",
            cross_entropy,
            required_inputs=(TARGET_INPUT, "weights"),
            multi_target=True,
            gradient_input="weights",
        ),
        Loss(
            "importance_sampling",
            importance_sampling,
            required_inputs=_POLICY_INPUTS,
            gradient_input="advantages",
        ),
        Loss(
            "ppo",
            ppo,
            required_inputs=_POLICY_INPUTS,
            optional_inputs=_CLIP_INPUTS,
            config_defaults={"clip_low_threshold": 0.8, "clip_high_threshold": 1.2},
            gradient_input="advantages",
        ),
        Loss(
            "cispo",
            cispo,
            required_inputs=_POLICY_INPUTS,
            optional_inputs=_CLIP_INPUTS,
            config_defaults={"clip_low_threshold": 0.0, "clip_high_threshold": 4.0},
            gradient_input="advantages",
        ),
        Loss("dro", dro, required_inputs=_POLICY_INPUTS, config_defaults={"beta": 0.05}),
        ScoreLoss(
            "bradley_terry",
            bradley_terry,
            paired=True,
            config_defaults={"margin": 0.0, "centering_coef": 0.0},
        ),
        ScoreLoss("reward_score", reward_score, paired=False, forward_only=True),
    )
}
"""Every built-in loss by name, in the order error messages list them (reference §3 defaults)."""


def total_loss(loss_fn: str, lp: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
    """The scalar sum of `loss_fn`'s terms over real (datum, position, target) entries."""
    import torch

    loss = LOSSES[loss_fn]
    assert isinstance(loss, Loss), f"{loss_fn} reads scores, not logprobs"
    terms = loss.terms(lp, batch)
    return torch.where(batch.valid, terms, torch.zeros_like(terms)).sum()
