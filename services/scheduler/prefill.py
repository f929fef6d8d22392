"""Building the prefill part of a step: the chunk in progress first, then waiting requests in
policy order until one does not fit (see admission.py for the budget)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from services.common.types import ReqInput
from services.scheduler.admission import Admission, PrefillBudget, running_reservation
from services.scheduler.request import Request

if TYPE_CHECKING:
    from services.scheduler.scheduler import Scheduler

logger = logging.getLogger(__name__)

Pairs = list[tuple[Request, ReqInput]]


def schedule_prefill(sched: Scheduler) -> Pairs:
    if sched.chunked is None and (not sched.waiting or len(sched.running) >= sched.max_running):
        return []
    cfg = sched.cfg
    reserved = running_reservation(
        list(sched.running.values()), sched.new_token_ratio, cfg.clip_max_new_tokens
    )
    budget = PrefillBudget(sched.kv, reserved, cfg.max_prefill_tokens, cfg.chunk_budget)
    adm = Admission(cfg, sched.kv, budget, alone=not sched.running)
    out: Pairs = []
    chunked = sched.chunked
    if chunked is not None:
        ri = adm.continue_chunk(chunked)
        if ri is not None:
            out.append((chunked, ri))
        if not chunked.prefilling:
            sched.chunked = None
    if sched.waiting and len(sched.running) < sched.max_running:
        _admit_waiting(sched, adm, out)
    for req, _ in out:
        # Prompt (or chunk) KV goes to the tree at once, so later requests share it.
        # NOTE: after admission, so no request of this step reads KV this step writes.
        sched.kv.cache_unfinished(req)
    return out


def _admit_waiting(sched: Scheduler, adm: Admission, out: Pairs) -> None:
    admitted: set[int] = set()
    for req in sched.policy.order(sched.waiting, sched.kv.peek_prefix):
        if len(sched.running) >= sched.max_running or sched.rows.available == 0:
            break
        first = not out
        if adm.alone and first and req.seq_len + sched.kv.page_size > sched.kv.capacity:
            sched._oom_abort(req)  # a retracted request that grew past the whole pool
            continue
        ri = adm.admit(req, sched.rows.alloc, first)
        if ri is None:
            if adm.deferred:
                continue
            break
        admitted.add(id(req))
        sched.running[req.rid] = req
        if req.prefilling:
            sched.chunked = req
        sched._record_admission(req)
        out.append((req, ri))
    if admitted:
        sched.waiting = [r for r in sched.waiting if id(r) not in admitted]
