"""Load and cache statistics of the scheduler core (read by the service's metrics and load RPCs)."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from radixserve.common.types import ForwardMode, StepInput, StepOutput

if TYPE_CHECKING:
    from radixserve.scheduler.allocator import RowAllocator
    from radixserve.scheduler.memory import KVManager
    from radixserve.scheduler.request import Request

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadStats:
    """A snapshot for load RPCs and metric gauges."""

    running: int
    waiting: int
    kv_usage: float
    cache_hit_rate: float
    new_token_ratio: float
    num_retractions: int
    free_slots: int
    cached_slots: int
    free_rows: int
    num_inflight: int


class SchedulerStats:
    """Counters and derived gauges; mixed into :class:`Scheduler`."""

    kv: KVManager
    rows: RowAllocator
    waiting: list[Request]
    running: dict[str, Request]
    new_token_ratio: float

    if TYPE_CHECKING:  # the Scheduler's read-only property

        @property
        def num_inflight(self) -> int: ...

    def __init__(self) -> None:
        self.num_retractions = 0
        self.num_finished = 0
        self.num_steps = 0
        self.num_extend_steps = 0
        self.num_decode_steps = 0
        self.num_mixed_steps = 0
        self.prompt_tokens_total = 0  # tokens prefilled or matched at admission
        self.cached_tokens_total = 0  # of which matched in the radix cache
        self.generated_tokens_total = 0
        self.forward_seconds_total = 0.0
        self.last_batch_size = 0
        self.last_step_tokens = 0
        self.queue_times: deque[float] = deque(maxlen=4096)  # arrival -> first admission

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def kv_usage(self) -> float:
        """Fraction of KV slots held by running requests (evictable cache entries count free)."""
        return self.kv.in_use / self.kv.capacity

    @property
    def cache_hit_rate(self) -> float:
        """Admitted prompt tokens found in the radix cache, over all admitted prompt tokens."""
        if self.prompt_tokens_total == 0:
            return 0.0
        return self.cached_tokens_total / self.prompt_tokens_total

    @property
    def free_slots(self) -> int:
        return self.kv.available

    @property
    def cached_slots(self) -> int:
        return self.kv.cached

    @property
    def evictable_slots(self) -> int:
        return self.kv.evictable

    @property
    def free_rows(self) -> int:
        return self.rows.unused

    def stats(self) -> LoadStats:
        return LoadStats(
            running=self.num_running,
            waiting=self.num_waiting,
            kv_usage=self.kv_usage,
            cache_hit_rate=self.cache_hit_rate,
            new_token_ratio=self.new_token_ratio,
            num_retractions=self.num_retractions,
            free_slots=self.free_slots,
            cached_slots=self.cached_slots,
            free_rows=self.free_rows,
            num_inflight=self.num_inflight,
        )

    def _record_admission(self, req: Request) -> None:
        hit = req.cache_len
        if req.num_retractions == 0:
            req.cached_tokens = hit
            self.queue_times.append(time.monotonic() - req.arrival)  # drained by the metrics
        self.prompt_tokens_total += req.seq_len
        self.cached_tokens_total += hit

    def _record_step(self, step: StepInput) -> None:
        self.num_steps += 1
        if step.mode == ForwardMode.EXTEND:
            self.num_extend_steps += 1
        elif step.mode == ForwardMode.DECODE:
            self.num_decode_steps += 1
        else:
            self.num_mixed_steps += 1
        self.last_batch_size = len(step.reqs)
        self.last_step_tokens = sum([len(r.new_slots) for r in step.reqs])

    def _record_result(self, out: StepOutput) -> None:
        self.forward_seconds_total += out.forward_seconds
