"""Recomputing a decoder's layers during backward instead of keeping their activations.

A training piece is cut by rows to fit the activation budget, but one sequence longer than the cap
cannot be cut. Under `layers_recomputed` its forward keeps only each decoder layer's input, and
backward runs each layer again when it reaches it: about one more forward of that sequence, for a
fraction of its activations (one layer's at a time).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _decoder_layers(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder's repeated layers, or none where the model does not expose them as `layers`."""
    layers = getattr(module.get_decoder(), "layers", None)
    return list(layers) if layers is not None else []


@contextmanager
def layers_recomputed(module: torch.nn.Module, recompute: bool = True) -> Iterator[None]:
    """Within the block, forwards of `module`'s decoder layers keep only their inputs for backward."""
    from torch.utils.checkpoint import checkpoint

    layers = _decoder_layers(module) if recompute else []
    for layer in layers:
        layer.forward = functools.partial(checkpoint, layer.forward, use_reentrant=False)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward  # the class's own forward again
