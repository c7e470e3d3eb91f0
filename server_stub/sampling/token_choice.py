"""Choosing the next token for every row at once: temperature, top-k, top-p, greedy, seeded draws.

Each row is sampled by inverting its own CDF at its own counter-based uniform (see `rng`), and
whether a row is top-k/top-p filtered depends only on that row's settings, so a row's token never
depends on its batch neighbours. Logprobs are of the temperature-scaled, unfiltered distribution
(the untempered one for greedy rows), in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from server_stub.sampling.rng import row_key, uniform_block

if TYPE_CHECKING:
    import torch

    from server_stub.sampling.requests import PreparedRequest

DRAW_BLOCK = 32  # decode steps whose uniforms are hashed together (one pass instead of one per step)


@dataclass
class RowSettings:
    """Per-row sampling settings as [R] tensors on the compute device."""

    temperature: torch.Tensor  # float32, 1.0 on greedy rows
    greedy: torch.Tensor  # bool
    top_k: torch.Tensor  # int64, vocab size when off
    top_p: torch.Tensor  # float32
    filtered: torch.Tensor  # bool: top-k or top-p is active
    keys: torch.Tensor  # int64 rng keys
    any_greedy: bool
    all_greedy: bool
    any_filtered: bool
    unit_temperature: bool  # every row samples at temperature 1 (or greedy): logits need no scaling
    draws: torch.Tensor | None = None  # [R, DRAW_BLOCK] fp32 uniforms for steps draws_from onwards
    draws_from: int = -1

    @classmethod
    def build(cls, requests: list[PreparedRequest], vocab_size: int, device: torch.device) -> RowSettings:
        import torch

        rows = [(req, i) for req in requests for i in range(req.num_samples)]
        greedy = [req.temperature == 0 for req, _ in rows]
        top_k = [vocab_size if req.top_k == -1 else min(req.top_k, vocab_size) for req, _ in rows]
        filtered = [k < vocab_size or req.top_p < 1 for k, (req, _) in zip(top_k, rows, strict=True)]
        return cls(
            temperature=torch.tensor(
                [1.0 if g else req.temperature for g, (req, _) in zip(greedy, rows, strict=True)],
                dtype=torch.float32,
                device=device,
            ),
            greedy=torch.tensor(greedy, device=device),
            top_k=torch.tensor(top_k, dtype=torch.int64, device=device),
            top_p=torch.tensor([req.top_p for req, _ in rows], dtype=torch.float32, device=device),
            filtered=torch.tensor(filtered, device=device),
            keys=torch.tensor([row_key(req.seed, i) for req, i in rows], dtype=torch.int64, device=device),
            any_greedy=any(greedy),
            all_greedy=all(greedy),
            any_filtered=any(f and not g for f, g in zip(filtered, greedy, strict=True)),
            unit_temperature=all(
                g or req.temperature == 1.0 for g, (req, _) in zip(greedy, rows, strict=True)
            ),
        )

    def select(self, rows: torch.Tensor) -> RowSettings:
        """The settings of `rows` only (the batch dropped its finished rows)."""
        greedy, filtered = self.greedy[rows], self.filtered[rows]
        return RowSettings(
            temperature=self.temperature[rows],
            greedy=greedy,
            top_k=self.top_k[rows],
            top_p=self.top_p[rows],
            filtered=filtered,
            keys=self.keys[rows],
            any_greedy=bool(greedy.any()),
            all_greedy=bool(greedy.all()),
            any_filtered=bool((filtered & ~greedy).any()),
            unit_temperature=self.unit_temperature,
            draws=None if self.draws is None else self.draws[rows],
            draws_from=self.draws_from,
        )

    def uniforms(self, step: int) -> torch.Tensor:
        """[R] fp32 (the logits' dtype): each row's uniform for `step`, hashed a block of steps at a time."""
        import torch

        if self.draws is None or not self.draws_from <= step < self.draws_from + DRAW_BLOCK:
            self.draws_from = step
            self.draws = uniform_block(self.keys, step, DRAW_BLOCK).to(torch.float32)
        return self.draws[:, step - self.draws_from]


def _invert_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index i with cdf[i-1] < u * total <= cdf[i] in each row (rows need not be normalised)."""
    import torch

    cdf = probs.cumsum(-1)
    target = (u.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, target).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def choose_tokens(logits: torch.Tensor, rows: RowSettings, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [R] int64, logprobs [R] fp32) for fp32 logits [R, V]."""
    import torch

    logp = torch.log_softmax(
        logits if rows.unit_temperature else logits / rows.temperature.unsqueeze(-1), dim=-1
    )
    if rows.all_greedy:
        tokens = logits.argmax(-1)
        return tokens, logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    u = rows.uniforms(step)
    probs = logp.exp()
    tokens = _invert_cdf(probs, u)
    if rows.any_filtered:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        rank = torch.arange(probs.shape[-1], device=probs.device)
        keep = rank.unsqueeze(0) < rows.top_k.unsqueeze(-1)
        keep &= (sorted_probs.cumsum(-1) - sorted_probs) < rows.top_p.unsqueeze(-1)
        picked = order.gather(-1, _invert_cdf(sorted_probs * keep, u).unsqueeze(-1)).squeeze(-1)
        tokens = torch.where(rows.filtered, picked, tokens)
    if rows.any_greedy:
        tokens = torch.where(rows.greedy, logits.argmax(-1), tokens)
    return tokens, logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
