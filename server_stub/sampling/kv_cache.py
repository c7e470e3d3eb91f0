"""A KV cache with spare room, so decoding writes new keys/values in place instead of re-copying.

transformers' DynamicCache grows by `torch.cat` on every step, which copies the whole cache each
time (O(n^2) bytes over a generation). Here each layer keeps buffers with room to spare and writes
each step into them; attention reads a view of the filled prefix. When full, a buffer doubles
(amortised O(n)), so a generous max_tokens never reserves memory it does not use. Models with
sliding-window or other special layers keep HF's own cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig


class RoomyLayer(DynamicLayer):
    """One attention layer's keys/values in buffers longer than what they hold."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def _allocate(self, like: torch.Tensor, rows: int, capacity: int) -> torch.Tensor:
        import torch

        return torch.empty(
            (rows, like.shape[1], capacity, like.shape[-1]), dtype=like.dtype, device=like.device
        )

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.keys = self._allocate(key_states, key_states.shape[0], self.capacity)
        self.values = self._allocate(value_states, value_states.shape[0], self.capacity)
        self.is_initialized = True

    def _rebuild(self, rows: torch.Tensor | None, capacity: int) -> None:
        """New buffers holding the filled prefix of `rows` (all rows if None) with room for `capacity`."""
        keys, values = self.keys, self.values
        if rows is not None:
            keys, values = (
                keys.index_select(0, rows),
                values.index_select(0, rows),
            )  # filled prefix copied below
        new_keys = self._allocate(keys, keys.shape[0], capacity)
        new_values = self._allocate(values, values.shape[0], capacity)
        new_keys[:, :, : self.length] = keys[:, :, : self.length]
        new_values[:, :, : self.length] = values[:, :, : self.length]
        self.keys, self.values, self.capacity = new_keys, new_values, capacity

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            self._rebuild(None, max(end, 2 * self.capacity))
        self.keys[:, :, self.length : end] = key_states
        self.values[:, :, self.length : end] = value_states
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def get_seq_length(self) -> int:
        return self.length

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        """Keep rows `beam_idx` (repeats allowed): fans a prefill out to samples, or drops finished rows."""
        if self.is_initialized:
            self._rebuild(beam_idx.to(self.keys.device), self.capacity)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.reorder_cache(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        import torch

        if self.is_initialized:
            self.reorder_cache(
                torch.arange(self.keys.shape[0], device=self.keys.device).repeat_interleave(repeats)
            )

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("the sampler never crops its cache")


def sampling_cache(config: PretrainedConfig, capacity: int) -> DynamicCache:
    """A cache sized for `capacity` positions (it grows if needed) when every layer is full attention."""
    cache = DynamicCache(config=config)
    if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [RoomyLayer(capacity) for _ in cache.layers]
    return cache


def join_rows(caches: list[DynamicCache]) -> DynamicCache:
    """One cache holding the rows of `caches` in order; each holds the same positions (equal-width prefills).

    Each layer's parts are released as soon as they are joined, so the copy never doubles the whole cache.
    """
    import torch

    joined = caches[0]
    if len(caches) == 1:
        return joined
    for index, layer in enumerate(joined.layers):
        parts = [cache.layers[index] for cache in caches]
        keys, values = torch.cat([p.keys for p in parts]), torch.cat([p.values for p in parts])
        for part in parts[1:]:
            del part.keys, part.values
        layer.keys, layer.values = keys, values
    return joined
