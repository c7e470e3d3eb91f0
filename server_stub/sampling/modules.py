"""Puts a sampler's weights into a module that can run: the base, a LoRA slot, or a full-weight shell.

LoRA snapshots of one shape share a sampling adapter on the base's hub; full-weight snapshots
share one private copy of the base (the "shell"). Each remembers which snapshot it holds, so
sampling the same snapshot again copies nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server_stub.engine import UserError
from server_stub.models.registry import LoadedBase, ModelRegistry
from server_stub.sampling.snapshots import Snapshot, SnapshotStore

if TYPE_CHECKING:
    import torch


class SamplingModules:
    """The per-base LoRA sampling slots and full-weight shells, and which snapshot each holds."""

    def __init__(self, registry: ModelRegistry, snapshots: SnapshotStore):
        self._registry = registry
        self._snapshots = snapshots
        self._shells: dict[str, torch.nn.Module] = {}
        self._holding: dict[tuple[str, str], str] = {}  # (base, slot or "shell") -> snapshot id

    def expected_names(self, base: LoadedBase, snapshot: Snapshot) -> dict[str, torch.nn.Parameter]:
        """The parameters a snapshot's tensors are copied into (creating the slot or shell if needed)."""
        if snapshot.lora is not None:
            slot = snapshot.lora.slot_name
            if slot not in base.hub.specs:
                base.hub.add(slot, snapshot.lora, seed=0, trainable=False)
            return base.hub.parameters_of(slot)
        shell = self._shells.get(base.name)
        if shell is None:
            shell = self._shells[base.name] = self._registry.fresh_model(base.name)
        return dict(shell.named_parameters())

    def check(
        self, base: LoadedBase, snapshot: Snapshot, tensors: dict[str, torch.Tensor], source: str
    ) -> None:
        """UserError unless `tensors` fit the module that will run them."""
        params = self.expected_names(base, snapshot)
        if set(params) != set(tensors) or any(
            tuple(params[k].shape) != tuple(t.shape) for k, t in tensors.items()
        ):
            raise UserError(
                f"{source} does not match base model {base.name!r} "
                f"({'LoRA rank ' + str(snapshot.lora.rank) if snapshot.lora else 'full weights'})",
                field="model_path",
            )

    def module_for(self, base: LoadedBase, snapshot_id: str | None) -> torch.nn.Module:
        """The module that computes the sampler's weights (base when `snapshot_id` is None)."""
        import torch

        if snapshot_id is None:
            return base.hub.activate(None)
        snapshot = self._snapshots.get(snapshot_id)
        holder = (base.name, snapshot.lora.slot_name if snapshot.lora else "shell")
        params = self.expected_names(base, snapshot)
        if self._holding.get(holder) != snapshot_id:
            tensors = self._snapshots.tensors(snapshot_id)
            with torch.no_grad():
                for name, param in params.items():
                    param.copy_(tensors[name])
            self._holding[holder] = snapshot_id
        if snapshot.lora is not None:
            return base.hub.activate(snapshot.lora.slot_name, trainable=False)
        return self._shells[base.name]
