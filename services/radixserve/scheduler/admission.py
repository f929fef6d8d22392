"""Prefill admission (SGLang's PrefillAdder): which waiting requests join the next extend step.

A request fits when its new tokens plus ``min(max_new_tokens, clip)`` fit in free + evictable
slots after reserving, for every running request, its remaining prefill plus its remaining new
tokens x ``new_token_ratio``. The first request of a step may pass ``max_prefill_tokens``; one
request at a time may be mid-chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from radixserve.common.types import ReqInput
from radixserve.scheduler.core_config import SchedulerCoreConfig
from radixserve.scheduler.memory import KVManager
from radixserve.scheduler.radix_cache import RadixCache
from radixserve.scheduler.request import Request, peak_kv_len, whole_pages

logger = logging.getLogger(__name__)


@dataclass
class PrefillBudget:
    kv: KVManager
    reserved: float  # future slots promised to running requests and to those admitted this step
    rem_input: int  # max_prefill_tokens left in this step
    rem_chunk: int | None  # chunked-prefill budget left in this step (None: no chunking)

    @property
    def rem_total(self) -> float:
        return self.kv.available + self.kv.evictable - self.reserved

    def take(self, new_tokens: int, future_tokens: float) -> None:
        self.rem_input -= new_tokens
        if self.rem_chunk is not None:
            self.rem_chunk -= new_tokens
        self.reserved += future_tokens


def running_reservation(running: list[Request], ratio: float, clip: int) -> float:
    """Slots that running requests may still need: remaining prefill + ratio x remaining budget."""
    total = 0.0
    for r in running:
        total += r.remaining_prefill + min(r.remaining_new_tokens, clip) * ratio
    return total


def extend_input(req: Request, new_slots: list[int]) -> ReqInput:
    """The ReqInput of an extend (prefill chunk) whose slots were just appended to ``req``."""
    start = req.kv_len - len(new_slots)
    first = req.fresh_row
    req.fresh_row = False
    sample = not req.prefilling
    if sample:
        req.pending_samples += 1
    return ReqInput(
        row=req.row,
        new_slots=new_slots,
        token_ids=req.all_ids[start : req.kv_len],
        prefix_slots=req.slots[:start] if first else None,
        sampling=req.sampling if first else None,
        sample=sample,
        prompt_len=req.prompt_len if first else 0,
        # NOTE: the worker knows the prefix's KV, not its ids; penalties need the ids.
        prefix_ids=req.all_ids[:start] if first and start and req.sampling.needs_history else None,
    )


class Admission:
    """Admission of one step; ``admit`` is called on waiting requests in policy order."""

    def __init__(
        self, cfg: SchedulerCoreConfig, kv: KVManager, budget: PrefillBudget, alone: bool
    ) -> None:
        self.cfg = cfg
        self.kv = kv
        self.budget = budget
        self.alone = alone  # nothing running: the head request may skip the decode reservation
        self.chunking = False  # a request is mid-chunk after this step
        self.deferred = False  # the last ``admit`` returned None to defer, not for lack of room
        self._batch_tree: RadixCache | None = None  # prompts admitted in this step

    def _shares_batch_prefix(self, req: Request, prefix: int) -> bool:
        """Whether ``req`` would recompute a long prefix that this step's prefill computes."""
        threshold = self.cfg.in_batch_prefix_threshold
        if threshold <= 0 or self.kv.cache is None:
            return False
        if self._batch_tree is None:
            self._batch_tree = RadixCache()
        key = req.all_ids
        shared, _ = self._batch_tree.match_prefix(key, req.extra_key, touch=False)
        if len(shared) - prefix >= threshold:
            return True
        self._batch_tree.insert(key, key, req.extra_key)
        return False

    def chunk_size(self, req: Request, extend: int, first: bool) -> int:
        """Tokens of ``req`` to prefill in this step; 0 when it does not fit."""
        budget = self.budget
        clip = self.cfg.clip_max_new_tokens
        future = min(req.max_new_tokens - req.num_output, clip)
        slack = self.kv.page_size
        if extend + future + slack > budget.rem_total:
            if not (self.alone and first and self._fits_alone(req)):
                return 0
        if extend > budget.rem_input and not first:
            return 0
        if budget.rem_chunk is not None and extend > budget.rem_chunk:
            if self.chunking or budget.rem_chunk <= 0:
                return 0
            return budget.rem_chunk
        return extend

    def _fits_alone(self, req: Request) -> bool:
        """Whether ``req``'s whole remaining life fits; always true for a request that runs
        alone (validate_request), so the head of the queue is never starved."""
        peak = whole_pages(peak_kv_len(req.prompt_len, req.max_new_tokens), self.kv.page_size)
        return peak - req.cache_len <= self.budget.rem_total

    def admit(
        self, req: Request, row_alloc: Callable[[], int | None], first: bool
    ) -> ReqInput | None:
        """Lock ``req``'s prefix, allocate its first chunk and a row; None (nothing held) if it
        does not fit. The caller checked that a row is available."""
        prefix = self.kv.attach_prefix(req)
        self.deferred = self._shares_batch_prefix(req, prefix) and not first
        if self.deferred:
            self.kv.release(req)
            return None
        extend = req.seq_len - prefix
        n = self.chunk_size(req, extend, first)
        new = self.kv.grow(req, n) if n > 0 else None
        if new is None:
            self.kv.release(req)
            return None
        row = row_alloc()
        assert row is not None, "admit: no row available"
        req.row = row
        req.fresh_row = True
        req.prefill_target = req.seq_len
        if n < extend:
            self.chunking = True
        future = min(req.max_new_tokens - req.num_output, self.cfg.clip_max_new_tokens)
        self.budget.take(n, future + (extend - n))
        return extend_input(req, new)

    def continue_chunk(self, req: Request) -> ReqInput | None:
        """Next chunk of the request that is mid-prefill (it goes before any new request)."""
        n = req.remaining_prefill
        if self.budget.rem_chunk is not None:
            n = min(n, self.budget.rem_chunk)
        new = self.kv.grow(req, n) if n > 0 else None
        if new is None:
            self.chunking = True
            return None
        self.budget.take(n, -n)  # its remaining prefill was reserved as a running request
        self.chunking = req.prefilling
        self._shares_batch_prefix(req, req.kv_len)  # later chunks: waiting sharers wait for them
        return extend_input(req, new)
