"""Configuration of the scheduler core (the service's config.py builds one from flags/env)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.scheduler.eviction import make_eviction_policy
from services.scheduler.policy import make_schedule_policy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchedulerCoreConfig:
    max_running_requests: int = 256  # also bounded by the worker's max_rows - 1
    max_prefill_tokens: int = 16384  # new tokens of one extend step (the first request may pass)
    chunked_prefill_size: int = 8192  # token budget of one prefill step; <= 0: no chunking
    schedule_policy: str = "fcfs"  # fcfs | lpm | priority (see policy.py)
    eviction_policy: str = "lru"  # lru | lfu (see eviction.py)
    page_size: int | None = None  # None: the worker's; else a multiple of it
    enable_cache: bool = True  # radix prefix cache
    enable_mixed_chunk: bool = False  # prefill chunk + decodes in one MIXED step
    init_new_token_ratio: float = 0.7
    min_new_token_ratio: float = 0.1
    new_token_ratio_decay_steps: int = 600
    clip_max_new_tokens: int = 4096  # admission reserves at most this many new tokens per request
    retract_decode_steps: int = 20  # decode steps assumed left per request when raising the ratio
    lpm_max_queue: int = 128  # lpm falls back to fcfs past this many waiting requests
    # A request sharing at least this many more tokens with one admitted in the same step than
    # with the cache waits a step and then hits the cache instead of recomputing (0: off).
    in_batch_prefix_threshold: int = 32

    def __post_init__(self) -> None:
        positive = ("max_running_requests", "max_prefill_tokens", "new_token_ratio_decay_steps")
        for name in positive + ("clip_max_new_tokens",):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.page_size is not None and self.page_size < 1:
            raise ValueError(f"page_size: must be >= 1, got {self.page_size}")
        if not 0.0 <= self.min_new_token_ratio <= self.init_new_token_ratio <= 1.0:
            raise ValueError(
                "init_new_token_ratio/min_new_token_ratio: need 0 <= min <= init <= 1, got "
                f"{self.min_new_token_ratio} and {self.init_new_token_ratio}"
            )
        make_schedule_policy(self.schedule_policy)  # fail early on unknown names
        make_eviction_policy(self.eviction_policy)

    @property
    def chunk_budget(self) -> int | None:
        return self.chunked_prefill_size if self.chunked_prefill_size > 0 else None

    @property
    def ratio_decay(self) -> float:
        steps = self.new_token_ratio_decay_steps
        return (self.init_new_token_ratio - self.min_new_token_ratio) / steps
