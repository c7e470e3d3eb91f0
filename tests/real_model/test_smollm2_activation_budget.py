"""The activation budget on SmolLM2-135M: its estimate per token against what autograd keeps, and its cap."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import torch

from server_stub.activation_budget import tokens_within, training_bytes_per_token
from server_stub.config import ServerConfig
from tests.server.engine.engine_helpers import saved_bytes_per_token

if TYPE_CHECKING:
    from transformers import PreTrainedModel

SMOLLM2_BYTES_PER_TOKEN = 30 * (10 * 576 + 4 * 1536) * 4  # 30 layers, hidden 576, MLP 1536, fp32


def test_the_estimate_matches_what_autograd_keeps_on_smollm2(reference_model: PreTrainedModel) -> None:
    estimate = training_bytes_per_token(reference_model.config, 4)
    assert estimate == SMOLLM2_BYTES_PER_TOKEN  # about 1.4 MB a token
    measured = saved_bytes_per_token(reference_model, torch.randint(100, 40_000, (2, 192)))
    assert estimate == pytest.approx(measured, rel=0.1)


def test_the_default_budget_caps_a_smollm2_training_piece_below_max_pass_tokens() -> None:
    cap = tokens_within(ServerConfig.activation_budget_mib, SMOLLM2_BYTES_PER_TOKEN)
    assert cap == ServerConfig.activation_budget_mib * 1024 * 1024 // SMOLLM2_BYTES_PER_TOKEN
    assert 256 <= cap < ServerConfig.max_pass_tokens
