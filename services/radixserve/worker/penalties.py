"""Per-row token statistics on the device, for the penalties and min_new_tokens.

Only rows whose sampling uses a penalty take a slot of the :class:`PenaltyBank` (two ``[slots,
vocab]`` tensors that grow on demand), so a step in which no row uses one builds nothing.

Formulas, applied to the logits of a row in this order (as vLLM does):

* repetition penalty ``r`` (HF), for tokens seen in the prompt or the output:
  ``logit / r`` where ``logit > 0`` else ``logit * r``;
* frequency ``f`` and presence ``p`` penalties (OpenAI), with ``c`` the token's count in the output:
  ``logit - f * c - p * (c > 0)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from radixserve.common.types import SamplingParams

logger = logging.getLogger(__name__)


class PenaltyBank:
    """Output counts and prompt-or-output presence of every penalized row, by bank slot."""

    def __init__(self, vocab_size: int, device: torch.device) -> None:
        self.vocab_size = vocab_size
        self.device = device
        self.counts = torch.zeros((0, vocab_size), dtype=torch.float32, device=device)
        self.seen = torch.zeros((0, vocab_size), dtype=torch.bool, device=device)
        self._free: list[int] = []

    @property
    def capacity(self) -> int:
        return self.counts.shape[0]

    def acquire(self) -> int:
        """A zeroed slot for a new row."""
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self.counts[slot].zero_()
        self.seen[slot].zero_()
        return slot

    def release(self, slot: int) -> None:
        self._free.append(slot)

    def _grow(self) -> None:
        old = self.capacity
        new = max(4, 2 * old)
        counts = torch.zeros((new, self.vocab_size), dtype=torch.float32, device=self.device)
        seen = torch.zeros((new, self.vocab_size), dtype=torch.bool, device=self.device)
        counts[:old] = self.counts
        seen[:old] = self.seen
        self.counts, self.seen = counts, seen
        self._free.extend(range(new - 1, old - 1, -1))
        logger.debug("penalty bank grown to %d rows", new)

    def record(self, slots: list[int], ids: list[int], is_output: list[bool]) -> None:
        """Token ``ids[i]`` joins slot ``slots[i]``: seen, and counted when ``is_output[i]``."""
        if not ids:
            return
        packed = torch.tensor([slots, ids, is_output], dtype=torch.int64).to(self.device)
        self._add(packed[0], packed[1], packed[2].float())

    def record_sampled(self, slots: list[int], ids: torch.Tensor) -> None:
        """Sampled tokens (``ids`` on the device, one per slot) are outputs."""
        s = torch.tensor(slots, dtype=torch.int64).to(self.device)
        self._add(s, ids.long(), torch.ones(len(slots), device=self.device))

    def _add(self, slots: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor) -> None:
        self.seen[slots, ids] = True
        self.counts.index_put_((slots, ids), weights, accumulate=True)

    def apply(
        self,
        logits: torch.Tensor,
        rows: list[int],
        slots: list[int],
        params: Sequence[SamplingParams],
    ) -> None:
        """Penalizes ``logits[rows[i]]`` (float32 ``[S, V]``, in place) with slot ``slots[i]``."""
        dev = logits.device
        idx = torch.tensor(rows, dtype=torch.int64).to(dev)
        bank = torch.tensor(slots, dtype=torch.int64).to(dev)
        coef = torch.tensor(
            [[p.repetition_penalty, p.frequency_penalty, p.presence_penalty] for p in params],
            dtype=torch.float32,
        ).to(dev)
        logits[idx] = apply_penalties(
            logits[idx], self.counts[bank], self.seen[bank], coef[:, 0], coef[:, 1], coef[:, 2]
        )


def apply_penalties(
    logits: torch.Tensor,
    counts: torch.Tensor,
    seen: torch.Tensor,
    repetition: torch.Tensor,
    frequency: torch.Tensor,
    presence: torch.Tensor,
) -> torch.Tensor:
    """The module docstring's formulas. logits/counts/seen ``[S, V]``, penalties ``[S]``."""
    rep = repetition[:, None]
    scaled = torch.where(logits > 0, logits / rep, logits * rep)
    logits = torch.where(seen, scaled, logits)
    return logits - frequency[:, None] * counts - presence[:, None] * (counts > 0).float()


def mask_tokens(logits: torch.Tensor, rows: list[int], ids: list[list[int]]) -> None:
    """Sets ``logits[rows[i], ids[i]]`` to -inf, in place (min_new_tokens hides stop tokens)."""
    vocab = logits.shape[-1]
    flat_rows = [r for r, row_ids in zip(rows, ids, strict=True) for t in row_ids if t < vocab]
    flat_ids = [t for row_ids in ids for t in row_ids if t < vocab]
    if flat_ids:
        packed = torch.tensor([flat_rows, flat_ids], dtype=torch.int64).to(logits.device)
        logits[packed[0], packed[1]] = float("-inf")
