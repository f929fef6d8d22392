"""Retraction: when a decode step cannot get its slots, send requests back to the queue.

Victims are the requests with the fewest generated tokens (the cheapest to redo; ties: the
longest prompt, which frees the most). A request that is mid-chunk goes first. Each victim's
computed prefix is inserted into the radix cache, so its re-prefill is mostly a cache hit unless
memory pressure evicts it. Afterwards ``new_token_ratio`` is raised as SGLang does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from services.scheduler.memory import KVManager
from services.scheduler.request import Request

if TYPE_CHECKING:
    from services.scheduler.scheduler import Scheduler

logger = logging.getLogger(__name__)


def decode_slots_needed(kv: KVManager, reqs: list[Request]) -> int:
    """Free slots that one decode step of ``reqs`` needs (a new page at each page boundary)."""
    ps = kv.page_size
    if ps == 1:
        return len(reqs)
    return ps * sum(1 for r in reqs if r.kv_len % ps == 0)


def make_room(sched: Scheduler, cands: list[Request]) -> list[Request]:
    """Evict, then retract, until one decode step of the returned requests fits."""
    kv = sched.kv
    need = decode_slots_needed(kv, cands)
    if kv.ensure(need):
        return cands
    victims = sorted(cands, key=lambda r: (r.num_output, -r.prompt_len), reverse=True)
    keep = list(cands)
    while not kv.ensure(need):
        if sched.chunked is not None:
            sched._retract(sched.chunked)
            continue
        if len(keep) == 1:
            if len(sched.running) == 1:
                sched._oom_abort(keep[0])
            return []  # otherwise wait for the results in flight to free memory
        victim = victims.pop()
        keep.remove(victim)
        need -= decode_slots_needed(kv, [victim])
        sched._retract(victim)
    _raise_ratio(sched, keep)
    logger.info(
        "retracted %d requests; %d decode, new_token_ratio %.3f",
        len(cands) - len(keep),
        len(keep),
        sched.new_token_ratio,
    )
    return keep


def _raise_ratio(sched: Scheduler, keep: list[Request]) -> None:
    cfg = sched.cfg
    decoded = sum(r.num_output for r in keep)
    budget = sum(r.max_new_tokens for r in keep)
    estimate = (decoded + cfg.retract_decode_steps * len(keep)) / (budget + 1)
    sched.new_token_ratio = max(sched.new_token_ratio, min(1.0, estimate))
