"""Lay a step's plans out as index arrays and turn them into a :class:`ForwardContext` on device
(one H2D copy).

The builders give :class:`StepArrays`: the :class:`IndexArrays` by name, as host lists (the
common decode step's from a short builder beside the general one: the same record, a test checks
they are equal). :func:`build_tensors` copies them to the device in one buffer (the same record
over tensors), writes the req->token table and returns the context.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar, cast

import numpy as np
import torch

from radixserve.common.types import ForwardMode
from radixserve.worker.forward_context import ForwardContext
from radixserve.worker.kv_pool import KVPool, ReqToTokenTable
from radixserve.worker.plan import StartedPlan

if TYPE_CHECKING:
    from radixserve.worker.attention.base import AttentionBackend

logger = logging.getLogger(__name__)

A = TypeVar("A")


class IndexArrays(NamedTuple, Generic[A]):
    """A step's int64 index arrays by name: host lists as built, device tensors once copied.

    The first nine are the :class:`ForwardContext`'s (see it for their meaning and shapes); the
    last three are the req->token writes ``table[write_rows[i], write_cols[i]] = write_slots[i]``
    (a first step's prefix slots, then every new token's slot). A field is added here once and
    each builder must give it (the type checker sees a missing keyword).
    NOTE: one buffer carries them to the device in this field order (:func:`_to_device`).
    """

    input_ids: A
    positions: A
    out_cache_loc: A
    req_rows: A
    seq_lens: A
    prefix_lens: A
    qo_indptr: A
    kv_indptr: A
    logits_indices: A
    write_rows: A
    write_cols: A
    write_slots: A


@dataclass(slots=True)
class StepArrays:
    """What an array builder gives: the index arrays, and what stays on the host only."""

    index: IndexArrays[list[int]]
    extend_lens: list[int]  # new tokens of each request


def is_sampled_decode(mode: ForwardMode, plans: Sequence[StartedPlan]) -> bool:
    """A decode step where every request samples: one new token each, each one's logits wanted
    (the short array builder's steps, and the only ones a decode CUDA graph runs)."""
    return mode == ForwardMode.DECODE and all(p.req.sample for p in plans)


def build_tensors(
    plans: Sequence[StartedPlan],
    mode: ForwardMode,
    kv_pool: KVPool,
    req_to_token: ReqToTokenTable,
    attn_backend: AttentionBackend,
) -> ForwardContext:
    """The step's :class:`ForwardContext`, with ``req_to_token`` updated for its rows."""
    host = _decode_arrays(plans) if is_sampled_decode(mode, plans) else _general_arrays(plans)
    dev = _to_device(host.index, req_to_token.table.device)
    # NOTE: before the forward reads the table
    req_to_token.write(dev.write_rows, dev.write_cols, dev.write_slots)
    return ForwardContext(
        mode=mode,
        input_ids=dev.input_ids,
        positions=dev.positions,
        out_cache_loc=dev.out_cache_loc,
        req_rows=dev.req_rows,
        seq_lens=dev.seq_lens,
        prefix_lens=dev.prefix_lens,
        qo_indptr=dev.qo_indptr,
        kv_indptr=dev.kv_indptr,
        logits_indices=dev.logits_indices,
        seq_lens_cpu=host.index.seq_lens,
        qo_indptr_cpu=host.index.qo_indptr,
        extend_lens_cpu=host.extend_lens,
        kv_pool=kv_pool,
        req_to_token=req_to_token.table,
        attn_backend=attn_backend,
    )


def _to_device(host: IndexArrays[list[int]], device: torch.device) -> IndexArrays[torch.Tensor]:
    """The same arrays on ``device``: packed into one int64 buffer, copied once, split there."""
    sizes = [len(a) for a in host]
    flat = np.fromiter(itertools.chain.from_iterable(host), dtype=np.int64, count=sum(sizes))
    parts = torch.from_numpy(flat).to(device, non_blocking=True).split(sizes)
    return IndexArrays._make(parts)


def _decode_arrays(plans: Sequence[StartedPlan]) -> StepArrays:
    """A decode step where every request samples: one token each, at its row's end."""
    n = len(plans)
    rows = [p.req.row for p in plans]
    starts = [p.start for p in plans]
    slots = [p.req.new_slots[0] for p in plans]
    seq_lens = [s + 1 for s in starts]  # each plan's end
    qo = list(range(n + 1))
    index = IndexArrays(
        # NOTE: plan_step checked that every decode's row has a sampled token
        input_ids=cast("list[int]", [p.state.last_token for p in plans]),
        positions=starts,
        out_cache_loc=slots,
        req_rows=rows,
        seq_lens=seq_lens,
        prefix_lens=starts,
        qo_indptr=qo,
        kv_indptr=_cumsum(seq_lens),
        logits_indices=qo[:n],
        write_rows=rows,
        write_cols=starts,
        write_slots=slots,
    )
    return StepArrays(index, [1] * n)


def _general_arrays(plans: Sequence[StartedPlan]) -> StepArrays:
    ids: list[int] = []
    pos: list[int] = []
    slots: list[int] = []
    w_rows: list[int] = []
    w_cols: list[int] = []
    w_slots: list[int] = []
    logit_idx: list[int] = []
    ext_lens = [p.req.num_new_tokens for p in plans]
    qo = _cumsum(ext_lens)
    for i, p in enumerate(plans):
        r = p.req
        # NOTE: plan_step checked that every decode's row has a sampled token
        ids.extend(r.token_ids if r.token_ids is not None else (cast(int, p.state.last_token),))
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
    index = IndexArrays(
        input_ids=ids,
        positions=pos,
        out_cache_loc=slots,
        req_rows=[p.req.row for p in plans],
        seq_lens=seq_lens,
        prefix_lens=[p.start for p in plans],
        qo_indptr=qo,
        kv_indptr=_cumsum(seq_lens),
        logits_indices=logit_idx,
        write_rows=w_rows,
        write_cols=w_cols,
        write_slots=w_slots,
    )
    return StepArrays(index, ext_lens)


def _cumsum(lens: list[int]) -> list[int]:
    """``[0, l0, l0 + l1, ...]``: the indptr of consecutive runs of these lengths."""
    return list(itertools.accumulate(lens, initial=0))
