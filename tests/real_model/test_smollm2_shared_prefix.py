"""Packed rows on SmolLM2-135M (grouped-query attention, its own RoPE base): each row's hidden states from
the packed body equal that row run alone through transformers' own copy of the model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from server_stub.training.shared_prefix import (
    pack_rows,
    prefix_groups,
    supports_shared_prefix,
    unpacked_hidden,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def test_packed_rows_give_each_row_its_own_hidden_states(reference_model: PreTrainedModel) -> None:
    assert supports_shared_prefix(reference_model)
    prompt = list(range(1000, 1040))
    answers = [list(range(2000 + 7 * k, 2000 + 7 * k + 9 + 4 * k)) for k in range(3)]
    rows = [prompt + answers[0] + answers[1], prompt + answers[1] + answers[0], prompt + answers[2]]
    shared = pack_rows(rows, prefix_groups(rows), torch.device("cpu"))
    assert shared is not None
    decoder = reference_model.get_decoder()
    with torch.no_grad():
        packed = unpacked_hidden(decoder, shared)
        for i, row in enumerate(rows):
            alone = decoder(input_ids=torch.tensor([row]), use_cache=False).last_hidden_state[0]
            assert torch.allclose(packed[i, : len(row)], alone, rtol=1e-4, atol=1e-4), i
