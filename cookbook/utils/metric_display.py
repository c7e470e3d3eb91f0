"""Which metrics a person looks at first, and how to print them compactly.

One list serves the console line (ml_log), the progress bar postfix (progress) and the default
plot (plotting), so the three always agree on what a run's headline numbers are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

HEADLINE_METRICS: tuple[str, ...] = (
    "train_mean_nll",  # SFT and preference-model training loss
    "test/nll",
    "test/accuracy",  # preference-model accuracy
    "test/win_rate",  # policy vs reference, judged by the preference model
    "test/gold_win_rate",  # policy vs reference, judged by a gold judge
    "env/all/reward/total",  # RL reward
    "optim/kl_sample_train_v1",  # sampler/trainer mismatch
    "optim/entropy",
    "kl_policy_ref",  # KL to the reference policy
    "env/all/ac_tokens_per_turn",  # response length
    "dpo_loss",
    "accuracy",  # DPO: chosen beats rejected
    "margin",
)
"""The curves that tell whether a run learns; plotted by default."""

CONSOLE_EXTRA_METRICS: tuple[str, ...] = ("learning_rate", "optim/lr", "time/total")
"""Printed on the console line after the headline metrics, never plotted by default."""


def is_number(value: Any) -> bool:
    """A real number a curve can use (bools are flags, not numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def pick_keys(metrics: Mapping[str, Any], preferred: Iterable[str], limit: int) -> list[str]:
    """Up to `limit` numeric keys: the preferred ones present, else the first numeric ones."""
    chosen = [k for k in preferred if is_number(metrics.get(k))]
    if not chosen:
        chosen = [k for k, v in metrics.items() if is_number(v) and k != "step"]
    return chosen[:limit]


def format_value(value: Any) -> str:
    """Four significant digits; ints as they are."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return str(value) if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def format_metrics(metrics: Mapping[str, Any], keys: Iterable[str], sep: str = " | ") -> str:
    """`key value` pairs joined by `sep`, for the keys present in `metrics`."""
    return sep.join(f"{k} {format_value(metrics[k])}" for k in keys if k in metrics)
