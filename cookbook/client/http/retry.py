"""When and how long to wait before retrying a request that failed in transit.

Retries are for failures that say nothing about the request itself: the server was busy (429),
timed out waiting (408), broke (5xx), or could not be reached. Every other 4xx is the caller's
mistake and is raised at once. Waits grow exponentially with full jitter, so many clients that
failed together do not come back together, and both the number of retries and the total time
spent are bounded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

RETRYABLE_STATUS = frozenset({408, 429})


def is_retryable_status(status_code: int) -> bool:
    return status_code in RETRYABLE_STATUS or 500 <= status_code < 600


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retrying one HTTP request."""

    max_retries: int = 10
    initial_delay_s: float = 0.25
    max_delay_s: float = 10.0
    max_total_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.initial_delay_s < 0 or self.max_delay_s < 0 or self.max_total_s < 0:
            raise ValueError("retry delays and the total time cap must be >= 0")

    def delay(self, attempt: int, rng: random.Random | None = None,
              retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        ceiling = min(self.max_delay_s, self.initial_delay_s * (2 ** attempt))
        wait = (rng or random).uniform(0.0, ceiling)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.max_delay_s))
        return wait

    def should_retry(self, attempt: int, elapsed_s: float, next_delay_s: float) -> bool:
        """Whether retry number `attempt` (0-based) is still within both bounds."""
        return attempt < self.max_retries and elapsed_s + next_delay_s <= self.max_total_s
