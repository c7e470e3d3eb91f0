"""Who plays whom in a group of completions, and what each one's record is worth.

Pairwise self-play RL scores each completion of a group against its siblings: a judge compares
the two completions of every matchup, and a completion's reward is its win fraction. The
pattern decides the matchups: every ordered pair (each pair judged in both positions, which
cancels a judge's bias for the first or second slot) or every unordered pair once (half the
judge calls). Chunking restricts matchups to consecutive chunks of the group, so the number of
judge calls grows linearly with the group size instead of quadratically.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

NO_MATCHUP_WIN_FRACTION = 0.5
"""The win fraction of a completion that played no matchup (a group of one): even odds."""


class TournamentPattern(StrEnum):
    ALL_PAIRS_BOTH_WAYS = "all_pairs_both_ways"  # every ordered pair (i, j), i != j
    ALL_PAIRS_ONE_WAY = "all_pairs_one_way"  # every pair once, as (i, j) with i < j


def get_pairs(n: int, pattern: TournamentPattern) -> list[tuple[int, int]]:
    """The matchups (A index, B index) among `n` players."""
    if n < 0:
        raise ValueError(f"the number of players must be >= 0, got {n}")
    pattern = TournamentPattern(pattern)
    if pattern is TournamentPattern.ALL_PAIRS_BOTH_WAYS:
        return [(i, j) for i in range(n) for j in range(n) if i != j]
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def get_pairs_chunked(n: int, pattern: TournamentPattern, chunk_size: int) -> list[tuple[int, int]]:
    """The matchups of `get_pairs` within consecutive chunks of `chunk_size` players (the last may be smaller)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if n < 0:
        raise ValueError(f"the number of players must be >= 0, got {n}")
    pairs: list[tuple[int, int]] = []
    for start in range(0, n, chunk_size):
        size = min(chunk_size, n - start)
        pairs += [(start + i, start + j) for i, j in get_pairs(size, pattern)]
    return pairs


def win_fractions(
    n: int,
    pairs: Sequence[tuple[int, int]],
    preferences: Sequence[float],
) -> tuple[list[float], list[int]]:
    """Each player's mean probability of winning its matchups, and its number of matchups.

    `preferences[k]` judges `pairs[k] = (i, j)` with i in position A and j in position B:
    -1 = A is better, +1 = B is better, values in between give P(B wins) = (1 + v) / 2 (a
    soft judge's confidence; a hard judge gives 0 or 1, a tie 1/2). A player with no
    matchup gets NO_MATCHUP_WIN_FRACTION.
    """
    if len(pairs) != len(preferences):
        raise ValueError(f"{len(pairs)} matchups but {len(preferences)} judgements")
    wins = [0.0] * n
    counts = [0] * n
    for (i, j), value in zip(pairs, preferences, strict=True):
        if not (0 <= i < n and 0 <= j < n) or i == j:
            raise ValueError(f"matchup {(i, j)} is not a pair of two of the {n} players")
        if not -1.0 <= value <= 1.0:
            raise ValueError(f"a preference must be in [-1, 1], got {value} for matchup {(i, j)}")
        p_b_wins = (1.0 + value) / 2.0
        wins[i] += 1.0 - p_b_wins
        wins[j] += p_b_wins
        counts[i] += 1
        counts[j] += 1
    fractions = [w / c if c else NO_MATCHUP_WIN_FRACTION for w, c in zip(wins, counts, strict=True)]
    return fractions, counts
