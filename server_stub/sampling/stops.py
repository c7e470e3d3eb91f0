"""Stop detection for a batch of rows: stop token ids (EOS included) and stop strings.

Token stops are one tensor comparison per step. Stop strings are matched on the generated text's
bytes across token boundaries; since a match can only complete in a token that contains the
stop's last byte, a vocabulary mask pre-filters rows on the device, and only those candidates are
checked in Python against the bytes of their last few tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from server_stub.models.token_bytes import TokenBytes

if TYPE_CHECKING:
    import torch

    from server_stub.sampling.requests import PreparedRequest


class StopTracker:
    def __init__(
        self, requests: list[PreparedRequest], token_bytes: TokenBytes, vocab_size: int, device: torch.device
    ):
        import torch

        rows = [req for req in requests for _ in range(req.num_samples)]
        width = max((len(r.stop_token_ids) for r in rows), default=0) or 1
        padded = [[*r.stop_token_ids, *[-1] * (width - len(r.stop_token_ids))] for r in rows]
        self._stop_ids = torch.tensor(padded, dtype=torch.int64, device=device).view(len(rows), width)
        self._rows: list[int] = list(range(len(rows)))  # the original row of each row still checked
        self._bytes = token_bytes
        self._row_strings = [req.stop_strings for req in rows]
        # Distinct stop-string sets -> a [sets, V] mask of tokens that could complete one of them.
        sets = list(dict.fromkeys(s for s in self._row_strings if s))
        self._has_strings = bool(sets)
        if self._has_strings:
            masks = np.zeros((len(sets), vocab_size), dtype=bool)
            for i, strings in enumerate(sets):
                for last_byte in {s[-1] for s in strings}:
                    contains = token_bytes.containing(last_byte)[:vocab_size]
                    masks[i, : contains.size] |= contains
            set_index = {s: i for i, s in enumerate(sets)}
            self._candidates = torch.from_numpy(masks).to(device)
            self._row_set = torch.tensor([set_index.get(s, 0) for s in self._row_strings], device=device)
            self._row_has = torch.tensor([bool(s) for s in self._row_strings], device=device)
            self._window = [max((len(s) for s in strings), default=0) for strings in self._row_strings]

    def select(self, index: torch.Tensor) -> None:
        """Check only rows `index` of those checked so far from now on (the batch dropped the others)."""
        self._stop_ids = self._stop_ids[index]
        self._rows = [self._rows[i] for i in index.tolist()]
        if self._has_strings:
            self._row_set, self._row_has = self._row_set[index], self._row_has[index]

    def hits(self, new_tokens: torch.Tensor, history: torch.Tensor, step: int) -> torch.Tensor:
        """[R] bool: the token just generated at `step` stops its row, for each row still checked.
        `history` is [all rows, >step] tokens, indexed by original row."""
        hit = (self._stop_ids == new_tokens.unsqueeze(-1)).any(-1)
        if not self._has_strings:
            return hit
        candidates = self._candidates[self._row_set, new_tokens] & self._row_has & ~hit
        for row in candidates.nonzero().flatten().tolist():
            if self._string_hit(self._rows[row], history, step):
                hit[row] = True
        return hit

    def _string_hit(self, row: int, history: torch.Tensor, step: int) -> bool:
        start = max(0, step + 1 - self._window[row])  # every token has at least one byte
        tokens = history[row, start : step + 1].tolist()
        table = self._bytes.table
        text = b"".join(table[t] if t < len(table) else b"" for t in tokens)
        new_bytes = len(table[tokens[-1]]) if tokens[-1] < len(table) else 0
        for stop in self._row_strings[row]:
            # Earlier matches would have stopped the row already, so a match must end in the new token.
            if new_bytes and stop in text[-(len(stop) - 1 + new_bytes) :]:
                return True
        return False
