"""Configuration of the scheduler core. The service's ``SchedulerConfig`` embeds it, so every field
here is also a flag ``--field-name`` and a ``RADIXSERVE_FIELD_NAME`` variable (common/config.py),
validated when the config is built, before anything connects."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TypeVar

from radixserve.scheduler.eviction import make_eviction_policy
from radixserve.scheduler.policy import make_schedule_policy

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _opt(default: T, help_text: str) -> T:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class SchedulerCoreConfig:
    max_running_requests: int = _opt(0, "most requests running at once; 0 = the worker's rows")
    max_prefill_tokens: int = _opt(16384, "new tokens of one extend step (the first may pass)")
    chunked_prefill_size: int = _opt(8192, "token budget of one prefill step; 0 disables chunking")
    schedule_policy: str = _opt("fcfs", "waiting-queue order: fcfs, lpm or priority")
    eviction_policy: str = _opt("lru", "prefix cache eviction: lru or lfu")
    page_size: int = _opt(0, "KV slots per page; 0 = the worker's, else a multiple of it")
    disable_radix_cache: bool = _opt(False, "turn the radix prefix cache off")
    enable_mixed_chunk: bool = _opt(False, "run a prefill chunk and decodes in one MIXED step")
    init_new_token_ratio: float = _opt(0.7, "admission: reserved share of remaining new tokens")
    min_new_token_ratio: float = _opt(0.1, "floor of that share")
    new_token_ratio_decay_steps: int = _opt(600, "decode steps to decay the share to its floor")
    clip_max_new_tokens: int = _opt(4096, "admission reserves at most this many new tokens each")
    retract_decode_steps: int = _opt(20, "decode steps assumed left per request after retraction")
    lpm_max_queue: int = _opt(128, "lpm falls back to fcfs past this many waiting requests")
    # A request sharing at least this many more tokens with one admitted in the same step than
    # with the cache waits a step and then hits the cache instead of recomputing (0: off).
    in_batch_prefix_threshold: int = _opt(32, "defer a request sharing this many tokens in-batch")

    def __post_init__(self) -> None:
        positive = ("max_prefill_tokens", "new_token_ratio_decay_steps", "clip_max_new_tokens")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("max_running_requests", "page_size", "lpm_max_queue"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.min_new_token_ratio <= self.init_new_token_ratio <= 1.0:
            raise ValueError(
                "init_new_token_ratio/min_new_token_ratio: need 0 <= min <= init <= 1, got "
                f"{self.min_new_token_ratio} and {self.init_new_token_ratio}"
            )
        make_schedule_policy(self.schedule_policy)  # fail early on unknown names
        make_eviction_policy(self.eviction_policy)

    @property
    def enable_cache(self) -> bool:
        return not self.disable_radix_cache

    @property
    def chunk_budget(self) -> int | None:
        return self.chunked_prefill_size if self.chunked_prefill_size > 0 else None

    @property
    def ratio_decay(self) -> float:
        steps = self.new_token_ratio_decay_steps
        return (self.init_new_token_ratio - self.min_new_token_ratio) / steps
