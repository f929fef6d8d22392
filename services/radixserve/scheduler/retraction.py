"""Retraction policy: when a decode step cannot get its slots, which requests go back to the
queue, and how far ``new_token_ratio`` rises afterwards (SGLang's rule).

Victims are the requests with the fewest generated tokens (the cheapest to redo; ties: the
longest prompt, which frees the most). A request that is mid-chunk goes first. Each victim's
computed prefix is inserted into the radix cache, so its re-prefill is mostly a cache hit unless
memory pressure evicts it. These functions only decide; ``Scheduler`` retracts.
"""

from __future__ import annotations

import logging

from radixserve.scheduler.core_config import SchedulerCoreConfig
from radixserve.scheduler.memory import KVManager
from radixserve.scheduler.request import Request

logger = logging.getLogger(__name__)


def decode_slots_needed(kv: KVManager, reqs: list[Request]) -> int:
    """Free slots that one decode step of ``reqs`` needs (a new page at each page boundary)."""
    ps = kv.page_size
    if ps == 1:
        return len(reqs)
    return ps * sum(1 for r in reqs if r.kv_len % ps == 0)


def victim_order(cands: list[Request]) -> list[Request]:
    """Decode candidates ordered so that ``pop()`` gives the next victim."""
    return sorted(cands, key=lambda r: (r.num_output, -r.prompt_len), reverse=True)


def raised_ratio(cfg: SchedulerCoreConfig, keep: list[Request], ratio: float) -> float:
    """``new_token_ratio`` after a retraction that kept ``keep`` decoding."""
    decoded = sum(r.num_output for r in keep)
    budget = sum(r.max_new_tokens for r in keep)
    estimate = (decoded + cfg.retract_decode_steps * len(keep)) / (budget + 1)
    return max(ratio, min(1.0, estimate))
