"""AdamW whose hyperparameters arrive with every step (the learning rate may change each time).

The update is torch.optim.AdamW's (bias correction, decoupled weight decay applied before the
moment update), computed by torch's fused kernel and preceded by optional global-norm gradient
clipping; the tests check it against torch. Parameters that are not fp32 (bf16 full-weight
training) get an fp32 master copy so small updates are not rounded away. State is keyed by
parameter name so it can be checkpointed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cookbook.client import types
from server_stub.engine import UserError

if TYPE_CHECKING:
    import torch

OPTIMIZER = "adamw"  # the optimizer's name on the wire (create_model's optimizer_config.type)
STATE_KEYS = ("exp_avg", "exp_avg_sq", "master")


def _global_norm(tensors: list[torch.Tensor]) -> float:
    import torch

    if not tensors:
        return 0.0
    return float(
        torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.detach().float()) for t in tensors]))
    )


class AdamW:
    def __init__(self, params: dict[str, torch.nn.Parameter]):
        self.params = params
        self.step_count = 0
        self.state: dict[str, dict[str, torch.Tensor]] = {key: {} for key in STATE_KEYS}

    def zero_grad(self) -> None:
        for param in self.params.values():
            param.grad = None

    def _fp32_weights(self, names: list[str]) -> list[torch.Tensor]:
        """The tensors the update is applied to: the parameter itself, or its fp32 master copy."""
        import torch

        weights = []
        for name in names:
            param = self.params[name]
            if param.dtype == torch.float32:
                weights.append(param.data)
            else:
                master = self.state["master"].get(name)
                if master is None:
                    master = self.state["master"][name] = param.detach().float().clone()
                weights.append(master)
        return weights

    def _moments(
        self, names: list[str], weights: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """First and second moments, created as zeros the first time a parameter steps."""
        import torch

        moments = []
        for kind in ("exp_avg", "exp_avg_sq"):
            store = self.state[kind]
            for name, weight in zip(names, weights, strict=True):
                if name not in store:
                    store[name] = torch.zeros_like(weight)
            moments.append([store[name] for name in names])
        return moments[0], moments[1]

    def step(self, hp: types.AdamParams) -> dict[str, float]:
        """Apply one update from the accumulated gradients, then clear them. Returns norms as metrics."""
        import torch

        names = [n for n, p in self.params.items() if p.grad is not None]
        grads = [self.params[n].grad.detach().float() for n in names]
        grad_norm = _global_norm(grads)
        if not math.isfinite(grad_norm):
            self.zero_grad()
            raise UserError(
                "accumulated gradients are not finite; the step was skipped and gradients cleared",
                field="adam_params",
            )
        if not names:
            return {
                "grad_norm": 0.0,
                "update_norm": 0.0,
                "param_norm": _global_norm(list(self.params.values())),
                "learning_rate": hp.learning_rate,
                "step": float(self.step_count),
            }
        if hp.grad_clip_norm > 0 and grad_norm > hp.grad_clip_norm:
            torch._foreach_mul_(grads, hp.grad_clip_norm / (grad_norm + 1e-6))
        self.step_count += 1
        lr, beta1, beta2 = hp.learning_rate, hp.beta1, hp.beta2
        with torch.no_grad():
            weights = self._fp32_weights(names)
            exp_avg, exp_avg_sq = self._moments(names, weights)
            before = [w.clone() for w in weights]
            # torch's fused AdamW kernel (what torch.optim.AdamW(fused=True) calls): one pass over each
            # tensor, where the update as _foreach ops read the weights and moments ten times (bench/README.md).
            step = torch.tensor(float(self.step_count), dtype=torch.float32, device=weights[0].device)
            torch._fused_adamw_(
                weights,
                grads,
                exp_avg,
                exp_avg_sq,
                [],  # max_exp_avg_sqs: amsgrad only
                [step] * len(weights),
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=hp.weight_decay,
                eps=hp.eps,
                amsgrad=False,
                maximize=False,
            )
            update_norm = _global_norm(torch._foreach_sub(weights, before))
            for name, weight in zip(names, weights, strict=True):
                param = self.params[name]
                if weight is not param.data:
                    param.data.copy_(weight)
        self.zero_grad()
        return {
            "grad_norm": grad_norm,
            "update_norm": update_norm,
            "param_norm": _global_norm(weights),
            "learning_rate": lr,
            "step": float(self.step_count),
        }

    # -- checkpointing -------------------------------------------------------------------------

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Flat `kind/param_name` -> tensor, for safetensors."""
        return {
            f"{kind}/{name}": t.detach()
            for kind, tensors in self.state.items()
            for name, t in tensors.items()
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], step_count: int) -> None:
        """Restore moments (and masters) saved by `state_tensors`; the caller checked the names match."""
        state: dict[str, dict[str, torch.Tensor]] = {key: {} for key in STATE_KEYS}
        for key, tensor in tensors.items():
            kind, _, name = key.partition("/")
            if kind not in state or name not in self.params:
                raise UserError(f"optimizer state entry {key!r} does not belong to this model", field="path")
            state[kind][name] = tensor.to(device=self.params[name].device, dtype=tensor.dtype).clone()
        self.state, self.step_count = state, step_count

    def reset(self) -> None:
        self.state = {key: {} for key in STATE_KEYS}
        self.step_count = 0
