"""Policies for rollouts: a prompt and a stop condition in, the sampled tokens and logprobs out.

The completer keeps the sampler's tokens untouched (stop sequence included) together with the
sampler's per-token logprobs. Decoding them to text and encoding again would not give the same
ids back in general, and the importance-sampling losses would then compare logprobs of
different tokens: RL here never re-tokenizes.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

from cookbook.client.abstract import SamplingClient
from cookbook.client.types import ModelInput, SamplingParams
from cookbook.rl.seeds import derive_seed
from cookbook.rl.types import StopCondition, TokensWithLogprobs


class TokenCompleter(ABC):
    """A policy over tokens."""

    one_call_per_group: bool = False
    """True when `complete_group` is one call (a request of n rows): rollouts then start a group with it."""

    @abstractmethod
    async def __call__(
        self, model_input: ModelInput, stop: StopCondition, *, seed: int | None = None
    ) -> TokensWithLogprobs:
        """Sample one turn after `model_input`. A `seed` makes the sample reproducible."""

    async def complete_group(
        self, model_input: ModelInput, stop: StopCondition, n: int, *, seed: int | None = None
    ) -> list[TokensWithLogprobs]:
        """`n` independent samples of one turn after the same `model_input` (a group's first turns).
        By default `n` calls, sample i seeded with `derive_seed(seed, i)`, all in flight together."""
        return list(
            await asyncio.gather(*(self(model_input, stop, seed=derive_seed(seed, i)) for i in range(n)))
        )


class SamplingClientTokenCompleter(TokenCompleter):
    """Samples one continuation per call from a sampling client (one snapshot of the policy)."""

    one_call_per_group = True

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
        [sample] = await self.complete_group(model_input, stop, 1, seed=seed)
        return sample

    async def complete_group(
        self, model_input: ModelInput, stop: StopCondition, n: int, *, seed: int | None = None
    ) -> list[TokensWithLogprobs]:
        """One sample request of `n` rows; the server draws row i from (`seed`, i)."""
        params = SamplingParams(
            max_tokens=self.max_tokens, temperature=self.temperature, stop=list(stop) or None, seed=seed
        )
        response = await self.sampling_client.sample_async(model_input, num_samples=n, sampling_params=params)
        if len(response.sequences) != n:
            raise ValueError(f"asked the sampler for {n} sequences, got {len(response.sequences)}")
        samples = []
        for sequence in response.sequences:
            if sequence.logprobs is None:
                raise ValueError("the sampler returned no logprobs; RL training needs the sampler's logprobs")
            samples.append(
                TokensWithLogprobs(
                    tokens=list(sequence.tokens),
                    maybe_logprobs=list(sequence.logprobs),
                    stop_reason=sequence.stop_reason,
                )
            )
        return samples
