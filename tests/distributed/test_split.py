"""How a request's datums are shared among ranks (pure: no process group)."""

from __future__ import annotations

from server_stub.distributed.data_parallel import rows_by_tokens


def test_rows_are_shared_by_tokens_and_each_row_goes_to_one_rank() -> None:
    lengths = [100, 10, 60, 50, 5, 40]
    shares = rows_by_tokens(lengths, 2)
    assert sorted(row for share in shares for row in share) == list(range(len(lengths)))
    loads = [sum(lengths[row] for row in share) for share in shares]
    assert max(loads) - min(loads) <= max(lengths)
    assert shares == rows_by_tokens(lengths, 2)  # every rank computes the same split on its own


def test_more_ranks_than_rows_leaves_some_ranks_empty() -> None:
    assert rows_by_tokens([7], 3) == [[0], [], []]
    assert rows_by_tokens([], 2) == [[], []]
