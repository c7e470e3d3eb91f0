"""A scalar reward head: one linear map from the final hidden state at a datum's last token to a score.

The head is one fp32 weight row [1, H] and no bias (a Bradley-Terry loss only sees score
differences, and the centring term pins the offset), the layout of Hugging Face's
`*ForSequenceClassification.score` with one label. It starts at zero, so a new head scores every
answer 0 and the first steps train the head before its gradient reaches the body. It is one more
named tensor of the trainable model, so the optimizer, save and load treat it like any other;
checkpoints keep it in its own file (storage/weight_files.py), beside the adapter or model files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server_stub.training.shared_prefix import unpacked_hidden

if TYPE_CHECKING:
    import torch

    from server_stub.training.batch import TrainBatch

REWARD_HEAD_WEIGHT = "reward_head.weight"
"""The head's tensor name among the model's trainable tensors, in checkpoints and optimizer state."""


def new_reward_head(module: torch.nn.Module) -> torch.nn.Parameter:
    """A zero head sized for `module`'s final hidden state, on its device, in fp32."""
    import torch

    hidden_size = int(module.config.hidden_size)
    device = next(module.parameters()).device
    return torch.nn.Parameter(torch.zeros(1, hidden_size, dtype=torch.float32, device=device))


def reward_scores(module: torch.nn.Module, head: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
    """[B] fp32: the head applied to each datum's final hidden state at its last real position.

    Only the body runs (no output layer): right padding cannot reach a real position under causal
    attention, so each datum's last position sees exactly its own tokens.
    """
    import torch

    decoder = module.get_decoder()
    if batch.shared is not None:
        hidden = unpacked_hidden(decoder, batch.shared)
    else:
        hidden = decoder(input_ids=batch.input_ids, use_cache=False).last_hidden_state
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    last = hidden[rows, batch.last_positions].float()
    return (last @ head.float().T).squeeze(-1)
