"""Turn a :class:`StepInput` into a :class:`ForwardContext` on device (one H2D copy).

Validation happens before any row state changes, so a rejected step leaves the worker as it was.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from radixserve.common.types import ForwardMode, ReqInput, StepInput
from radixserve.worker.forward_context import ForwardContext
from radixserve.worker.kv_pool import KVPool, ReqToTokenTable
from radixserve.worker.rows import RowState, RowTable

if TYPE_CHECKING:
    from radixserve.worker.attention.base import AttentionBackend

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_rows: int
    num_slots: int
    max_context_len: int
    vocab_size: int


@dataclass
class ReqPlan:
    """Where one request of the step starts; ``state`` is None for a row's first step."""

    req: ReqInput
    state: RowState | None
    start: int  # position of its first new token

    @property
    def end(self) -> int:
        return self.start + self.req.num_new_tokens


def plan_step(step: StepInput, rows: RowTable, lim: Limits) -> list[ReqPlan]:
    """Check ``step`` against the contract; raise ValueError naming the first problem."""
    if not step.reqs:
        raise ValueError("step has no requests")
    if step.mode == ForwardMode.DECODE:
        plans = _plan_plain_decode(step.reqs, rows, lim)
        if plans is not None:
            return plans
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
    twice), and the general checks then run and name the problem. Slots are checked as there."""
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
    if req.is_decode:
        if req.num_new_tokens != 1:
            raise ValueError(
                f"{where}: a decode appends exactly one slot, got {req.num_new_tokens}"
            )
        if state.last_token is None:
            raise ValueError(f"{where}: decode but nothing was sampled for this row yet")
    else:
        if len(req.token_ids) != req.num_new_tokens:
            raise ValueError(
                f"{where}: {len(req.token_ids)} token_ids but {req.num_new_tokens} new_slots"
            )
        if min(req.token_ids) < 0 or max(req.token_ids) >= lim.vocab_size:
            raise ValueError(f"{where}: token id out of range [0, {lim.vocab_size})")
    plan = ReqPlan(req, state, start)
    if plan.end > lim.max_context_len:
        raise ValueError(
            f"{where}: context overflow, {plan.end} tokens > max_context_len {lim.max_context_len}"
        )
    return plan


def _check_slots(reqs: list[ReqInput], num_slots: int) -> None:
    lists = [r.new_slots for r in reqs] + [r.prefix_slots for r in reqs if r.prefix_slots]
    slots = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64)
    if slots.min() < 1 or slots.max() >= num_slots:
        bad = int(slots[(slots < 1) | (slots >= num_slots)][0])
        raise ValueError(f"slot {bad} out of range [1, {num_slots}) (slot 0 is padding)")


def build_tensors(
    plans: list[ReqPlan],
    mode: ForwardMode,
    kv_pool: KVPool,
    req_to_token: ReqToTokenTable,
    attn_backend: AttentionBackend,
) -> ForwardContext:
    """The step's :class:`ForwardContext`, with ``req_to_token`` updated for its rows.

    Every index array is packed into one int64 buffer, copied to the device once and split there.
    """
    if mode == ForwardMode.DECODE and all(p.req.sample for p in plans):
        arrays, seq_lens, qo, ext_lens = _decode_arrays(plans)
    else:
        arrays, seq_lens, qo, ext_lens = _general_arrays(plans)
    sizes = [len(a) for a in arrays]
    chained = itertools.chain.from_iterable(arrays)
    flat = torch.from_numpy(np.fromiter(chained, dtype=np.int64, count=sum(sizes)))
    parts = flat.to(req_to_token.table.device, non_blocking=True).split(sizes)
    req_to_token.write(*parts[9:])  # NOTE: before the forward reads the table
    return ForwardContext(
        mode=mode,
        input_ids=parts[0],
        positions=parts[1],
        out_cache_loc=parts[2],
        req_rows=parts[3],
        seq_lens=parts[4],
        prefix_lens=parts[5],
        qo_indptr=parts[6],
        kv_indptr=parts[7],
        logits_indices=parts[8],
        seq_lens_cpu=seq_lens,
        qo_indptr_cpu=qo,
        extend_lens_cpu=ext_lens,
        kv_pool=kv_pool,
        req_to_token=req_to_token.table,
        attn_backend=attn_backend,
    )


# The index arrays of a step, in ForwardContext order: input ids, positions, out slots, rows,
# seq lens, prefix lens, qo indptr, kv indptr, logits indices, then the req_to_token writes
# (rows, columns, slots); with the host copies of seq lens, qo indptr and extend lens.
_Arrays = tuple[list[list[int]], list[int], list[int], list[int]]


def _decode_arrays(plans: list[ReqPlan]) -> _Arrays:
    """A decode step where every request samples: one token each, at its row's end."""
    n = len(plans)
    rows = [p.req.row for p in plans]
    starts = [p.start for p in plans]
    slots = [p.req.new_slots[0] for p in plans]
    ids = [p.state.last_token for p in plans]
    seq_lens = [s + 1 for s in starts]
    qo = list(range(n + 1))
    kv = np.concatenate(([0], np.cumsum(seq_lens))).tolist()
    arrays = [ids, starts, slots, rows, seq_lens, starts, qo, kv, qo[:n], rows, starts, slots]
    return arrays, seq_lens, qo, [1] * n


def _general_arrays(plans: list[ReqPlan]) -> _Arrays:
    ids, pos, slots, w_rows, w_cols, w_slots, logit_idx = [], [], [], [], [], [], []
    ext_lens = [p.req.num_new_tokens for p in plans]
    qo = np.concatenate(([0], np.cumsum(ext_lens))).tolist()
    for i, p in enumerate(plans):
        r = p.req
        ids.extend(r.token_ids if r.token_ids is not None else (p.state.last_token,))
        pos.extend(range(p.start, p.end))
        slots.extend(r.new_slots)
        # NOTE: prefix_slots only ever come with a row's first step (plan_step checks that);
        # the runner has already started the row's state by now, so test the slots, not state.
        if r.prefix_slots:
            w_rows.extend([r.row] * len(r.prefix_slots))
            w_cols.extend(range(len(r.prefix_slots)))
            w_slots.extend(r.prefix_slots)
        w_rows.extend([r.row] * r.num_new_tokens)
        w_cols.extend(range(p.start, p.end))
        w_slots.extend(r.new_slots)
        if r.sample:
            logit_idx.append(qo[i + 1] - 1)
    seq_lens = [p.end for p in plans]
    kv = np.concatenate(([0], np.cumsum(seq_lens))).tolist()
    arrays = [ids, pos, slots, [p.req.row for p in plans], seq_lens, [p.start for p in plans]]
    arrays += [qo, kv, logit_idx, w_rows, w_cols, w_slots]
    return arrays, seq_lens, qo, ext_lens
