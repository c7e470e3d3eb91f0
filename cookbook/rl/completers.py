"""Policies for rollouts: a prompt and a stop condition in, the sampled tokens and logprobs out.

The completer keeps the sampler's tokens untouched (stop sequence included) together with the
sampler's per-token logprobs. Decoding them to text and encoding again would not give the same
ids back in general, and the importance-sampling losses would then compare logprobs of
different tokens: RL here never re-tokenizes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from cookbook.client.abstract import SamplingClient
from cookbook.client.types import ModelInput, SamplingParams
from cookbook.rl.types import StopCondition, TokensWithLogprobs


class TokenCompleter(ABC):
    """A policy over tokens."""

    @abstractmethod
    async def __call__(
        self, model_input: ModelInput, stop: StopCondition, *, seed: int | None = None
    ) -> TokensWithLogprobs:
        """Sample one turn after `model_input`. A `seed` makes the sample reproducible."""


class SamplingClientTokenCompleter(TokenCompleter):
    """Samples one continuation per call from a sampling client (one snapshot of the policy)."""

    def __init__(self, sampling_client: SamplingClient, max_tokens: int, temperature: float = 1.0):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        self.sampling_client = sampling_client
        self.max_tokens = max_tokens
        self.temperature = temperature

    async def __call__(
        self, model_input: ModelInput, stop: StopCondition, *, seed: int | None = None
    ) -> TokensWithLogprobs:
        params = SamplingParams(
            max_tokens=self.max_tokens, temperature=self.temperature, stop=list(stop) or None, seed=seed
        )
        response = await self.sampling_client.sample_async(model_input, num_samples=1, sampling_params=params)
        if len(response.sequences) != 1:
            raise ValueError(f"asked the sampler for 1 sequence, got {len(response.sequences)}")
        sequence = response.sequences[0]
        if sequence.logprobs is None:
            raise ValueError("the sampler returned no logprobs; RL training needs the sampler's logprobs")
        return TokensWithLogprobs(
            tokens=list(sequence.tokens),
            maybe_logprobs=list(sequence.logprobs),
            stop_reason=sequence.stop_reason,
        )
