"""Per-row request state the worker keeps between steps (CPU side)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from radixserve.common.types import SamplingParams
from radixserve.worker.penalties import PenaltyBank

logger = logging.getLogger(__name__)


@dataclass
class RowState:
    """One live request: tokens in its row, the token to feed next decode, how to sample."""

    sampling: SamplingParams
    seq_len: int = 0
    last_token: int | None = None
    generator: torch.Generator | None = None
    prompt_len: int = 0  # leading prompt tokens of the row; 0 until known
    bank_slot: int | None = None  # slot in the PenaltyBank when the sampling uses penalties

    def generated_before(self, end: int) -> int:
        """Tokens generated before the one sampled after position ``end - 1``."""
        return max(0, end - self.prompt_len) if self.prompt_len else 0


class RowTable:
    """Live rows by index; a row is live from its first step until released."""

    def __init__(
        self, max_rows: int, device: torch.device, bank: PenaltyBank | None = None
    ) -> None:
        self.max_rows = max_rows
        self.device = device
        self.bank = bank
        self._rows: dict[int, RowState] = {}
        # NOTE: live rows with penalties or min_new_tokens; at 0 a step skips all logit edits.
        self.num_adjusted = 0

    def get(self, row: int) -> RowState | None:
        return self._rows.get(row)

    def start(
        self, row: int, sampling: SamplingParams | None, prefix_len: int, prompt_len: int = 0
    ) -> RowState:
        params = sampling or SamplingParams()
        gen = None
        if params.seed is not None and not params.greedy:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(int(params.seed))
        self.release(row)  # a new request reusing the row
        state = RowState(sampling=params, seq_len=prefix_len, generator=gen, prompt_len=prompt_len)
        if params.uses_penalties and self.bank is not None:
            state.bank_slot = self.bank.acquire()
        self.num_adjusted += _adjusts(params)
        self._rows[row] = state
        return state

    def release(self, row: int) -> None:
        state = self._rows.pop(row, None)
        if state is None:
            return
        self.num_adjusted -= _adjusts(state.sampling)
        if state.bank_slot is not None and self.bank is not None:
            self.bank.release(state.bank_slot)

    def clear(self) -> None:
        for row in list(self._rows):
            self.release(row)

    def __len__(self) -> int:
        return len(self._rows)


def _adjusts(params: SamplingParams) -> bool:
    return params.uses_penalties or params.min_new_tokens > 0
