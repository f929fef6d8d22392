"""Check a :class:`StepInput` against the step contract and plan its requests (CPU only).

:func:`plan_step` gives a :class:`ReqPlan` per request: its row's :class:`RowState` (None on a
row's first step) and where its new tokens start. ``ModelRunner.step`` then starts the rows of
first steps, and the plans are :class:`StartedPlan` for what follows (``batch.build_tensors``).

Validation happens before any row state changes, so a rejected step leaves the worker as it was.
The common decode step (plain decodes on live rows) takes a one-pass check beside the general
checks: it gives the same plans, and a step it refuses goes through the general checks, the only
place that names a problem (tests/worker/test_plan.py holds the two to that).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from radixserve.common.types import ForwardMode, ReqInput, StepInput
from radixserve.worker.rows import RowState, RowTable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_rows: int
    num_slots: int
    max_context_len: int
    vocab_size: int


@dataclass(slots=True)
class ReqPlan:
    """Where one request of the step starts; ``state`` is None for a row's first step."""

    req: ReqInput
    state: RowState | None
    start: int  # position of its first new token

    @property
    def end(self) -> int:
        return self.start + self.req.num_new_tokens


class StartedPlan(Protocol):
    """A :class:`ReqPlan` once ``ModelRunner.step`` started its row: ``state`` is set (the same
    objects, narrowed for the type checker)."""

    req: ReqInput
    state: RowState
    start: int

    @property
    def end(self) -> int: ...


def plan_step(step: StepInput, rows: RowTable, lim: Limits) -> list[ReqPlan]:
    """Check ``step`` against the contract; raise ValueError naming the first problem."""
    if not step.reqs:
        raise ValueError("step has no requests")
    if step.mode == ForwardMode.DECODE:
        plans = _plan_plain_decode(step.reqs, rows, lim)
        if plans is not None:
            return plans
    return _plan_general(step, rows, lim)


def _plan_general(step: StepInput, rows: RowTable, lim: Limits) -> list[ReqPlan]:
    seen: set[int] = set()
    plans = []
    for i, req in enumerate(step.reqs):
        where = f"request {i} (row {req.row})"
        if not 0 <= req.row < lim.max_rows:
            raise ValueError(f"{where}: row out of range [0, {lim.max_rows})")
        if req.row in seen:
            raise ValueError(f"{where}: row appears twice in one step")
        seen.add(req.row)
        plans.append(_plan_req(req, rows.get(req.row), step.mode, where, lim))
    _check_slots(step.reqs, lim.num_slots)
    return plans


def _plan_plain_decode(reqs: list[ReqInput], rows: RowTable, lim: Limits) -> list[ReqPlan] | None:
    """The plans of a decode step whose every request is a plain decode of a live row (one slot,
    sampled, nothing else), checked in one pass; None when any request is not (or a row appears
    twice), and the general checks then run and name the problem. Slots are checked as there.

    NOTE: it accepts only steps :func:`_plan_general` accepts, with the same plans: its test per
    request is the general one's for a plain decode (a live row, a sampled token, room for one
    more), inlined for speed; a new rule for decodes goes into both (tests/worker/test_plan.py).
    """
    get, end_limit = rows.get, lim.max_context_len
    plans = []
    for req in reqs:
        state = get(req.row)
        if (
            state is None
            or state.last_token is None
            or state.seq_len >= end_limit
            or not req.is_plain_decode
        ):
            return None
        plans.append(ReqPlan(req, state, state.seq_len))
    if len({r.row for r in reqs}) != len(reqs):
        return None
    _check_slots(reqs, lim.num_slots)
    return plans


def _plan_req(
    req: ReqInput, state: RowState | None, mode: ForwardMode, where: str, lim: Limits
) -> ReqPlan:
    if mode == ForwardMode.DECODE and not req.is_decode:
        raise ValueError(f"{where}: token_ids given in a DECODE step")
    if mode == ForwardMode.EXTEND and req.is_decode:
        raise ValueError(f"{where}: token_ids missing in an EXTEND step")
    if req.num_new_tokens < 1:
        raise ValueError(f"{where}: new_slots is empty")
    if req.sampling is not None:
        state = None  # a request's first step: the row starts over, whatever it held
    if state is None:
        if req.is_decode:
            raise ValueError(f"{where}: decode on a row with no request (extend it first)")
        start = len(req.prefix_slots or ())
        if req.prefix_ids and len(req.prefix_ids) != start:
            raise ValueError(f"{where}: {len(req.prefix_ids)} prefix_ids but {start} prefix_slots")
    else:
        if req.prefix_slots is not None:
            raise ValueError(f"{where}: prefix_slots without sampling (only a first step has them)")
        start = state.seq_len
    if req.token_ids is None:  # a decode (is_decode, spelled so the type checker narrows)
        _check_decode(req, state, where)
    else:
        _check_token_ids(req.token_ids, req.num_new_tokens, where, lim.vocab_size)
    plan = ReqPlan(req, state, start)
    if plan.end > lim.max_context_len:
        raise ValueError(
            f"{where}: context overflow, {plan.end} tokens > max_context_len {lim.max_context_len}"
        )
    return plan


def _check_decode(req: ReqInput, state: RowState | None, where: str) -> None:
    if req.num_new_tokens != 1:
        raise ValueError(f"{where}: a decode appends exactly one slot, got {req.num_new_tokens}")
    assert state is not None  # NOTE: _plan_req refused a decode on a row with no request
    if state.last_token is None:
        raise ValueError(f"{where}: decode but nothing was sampled for this row yet")


def _check_token_ids(ids: list[int], num_new_tokens: int, where: str, vocab_size: int) -> None:
    if len(ids) != num_new_tokens:
        raise ValueError(f"{where}: {len(ids)} token_ids but {num_new_tokens} new_slots")
    if min(ids) < 0 or max(ids) >= vocab_size:
        raise ValueError(f"{where}: token id out of range [0, {vocab_size})")


def _check_slots(reqs: list[ReqInput], num_slots: int) -> None:
    lists = [r.new_slots for r in reqs] + [r.prefix_slots for r in reqs if r.prefix_slots]
    slots = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64)
    if slots.min() < 1 or slots.max() >= num_slots:
        bad = int(slots[(slots < 1) | (slots >= num_slots)][0])
        raise ValueError(f"slot {bad} out of range [1, {num_slots}) (slot 0 is padding)")
