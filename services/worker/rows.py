"""Per-row request state the worker keeps between steps (CPU side)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from services.common.types import SamplingParams

logger = logging.getLogger(__name__)


@dataclass
class RowState:
    """One live request: tokens in its row, the token to feed next decode, how to sample."""

    sampling: SamplingParams
    seq_len: int = 0
    last_token: int | None = None
    generator: torch.Generator | None = None


class RowTable:
    """Live rows by index; a row is live from its first step until released."""

    def __init__(self, max_rows: int, device: torch.device) -> None:
        self.max_rows = max_rows
        self.device = device
        self._rows: dict[int, RowState] = {}

    def get(self, row: int) -> RowState | None:
        return self._rows.get(row)

    def start(self, row: int, sampling: SamplingParams | None, prefix_len: int) -> RowState:
        params = sampling or SamplingParams()
        gen = None
        if params.seed is not None and not params.greedy:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(int(params.seed))
        state = RowState(sampling=params, seq_len=prefix_len, generator=gen)
        self._rows[row] = state
        return state

    def release(self, row: int) -> None:
        self._rows.pop(row, None)

    def clear(self) -> None:
        self._rows.clear()

    def __len__(self) -> int:
        return len(self._rows)
