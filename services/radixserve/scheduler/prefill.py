"""Planning the prefill part of a step: the chunk in progress first, then waiting requests in
policy order until one does not fit (see admission.py for the budget).

The plan only decides: it locks prefixes and allocates slots and rows for what it admits (the KV
manager's and the row allocator's state), while the waiting/running lists are the scheduler's,
which applies the returned :class:`PrefillPlan`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from radixserve.common.types import ReqInput
from radixserve.scheduler.admission import Admission, PrefillBudget, running_reservation
from radixserve.scheduler.allocator import RowAllocator
from radixserve.scheduler.core_config import SchedulerCoreConfig
from radixserve.scheduler.memory import KVManager
from radixserve.scheduler.policy import SchedulePolicy
from radixserve.scheduler.request import Request

logger = logging.getLogger(__name__)

Pairs = list[tuple[Request, ReqInput]]


@dataclass
class PrefillPlan:
    """What the prefill part of a step decided."""

    pairs: Pairs = field(default_factory=list)  # the continued chunk first, then admissions
    admitted: list[Request] = field(default_factory=list)  # leave the waiting list, now running
    chunked: Request | None = None  # the request mid-chunk once this step ran


@dataclass
class PrefillState:
    """The scheduler state a prefill plan reads (and must not change)."""

    waiting: list[Request]
    running: Sequence[Request]
    chunked: Request | None
    new_token_ratio: float
    max_running: int


def plan_prefill(
    cfg: SchedulerCoreConfig,
    kv: KVManager,
    rows: RowAllocator,
    policy: SchedulePolicy,
    state: PrefillState,
) -> PrefillPlan:
    plan = PrefillPlan(chunked=state.chunked)
    room = state.max_running - len(state.running)
    if state.chunked is None and (not state.waiting or room <= 0):
        return plan
    reserved = running_reservation(
        list(state.running), state.new_token_ratio, cfg.clip_max_new_tokens
    )
    budget = PrefillBudget(kv, reserved, cfg.max_prefill_tokens, cfg.chunk_budget)
    adm = Admission(cfg, kv, budget, alone=not state.running)
    chunked = state.chunked
    if chunked is not None:
        ri = adm.continue_chunk(chunked)
        if ri is not None:
            plan.pairs.append((chunked, ri))
        if not chunked.prefilling:
            plan.chunked = None
    if not state.waiting or room <= 0:
        return plan
    for req in policy.order(state.waiting, kv.peek_prefix):
        if len(plan.admitted) >= room or rows.available == 0:
            break
        ri = adm.admit(req, rows.alloc, first=not plan.pairs)
        if ri is None:
            if adm.deferred:
                continue
            break
        plan.admitted.append(req)
        if req.prefilling:
            plan.chunked = req
        plan.pairs.append((req, ri))
    return plan
