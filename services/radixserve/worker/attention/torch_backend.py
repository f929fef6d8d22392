"""Attention in plain PyTorch over the paged KV pool (CPU and GPU; the reference backend).

Requests are padded into groups: each group gathers its requests' KV by slot from
``req_to_token[row, :seq_len]`` into ``[B, max_kv, Hkv, D]`` and runs one SDPA call with a mask
that is causal with an offset (query ``j`` of a request sits at position ``prefix_len + j``) and
hides the padding. Groups keep ``B * max_kv`` bounded so a big batch never gathers too much.

A sliding window W adds ``key_pos > q_pos - W`` to the mask (one mask per group per window, built
in ``prepare``); a logit soft-cap runs the scores through ``cap * tanh(s / cap)`` before the mask
and softmax (plain matmuls in float32: SDPA has no soft-cap).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from radixserve.worker.attention.base import AttentionBackend
from radixserve.worker.forward_context import ForwardContext
from radixserve.worker.kv_pool import KVPool

logger = logging.getLogger(__name__)

_GROUP_TOKENS = 1 << 18  # most gathered KV rows (B * max_kv) in one group
_NO_GRAPHS = (
    "the torch attention backend cannot run in a CUDA graph (its padded groups depend on host "
    "lengths); use the triton backend or --cuda-graph-max-bs 0"
)


@dataclass
class _Group:
    tok_start: int  # flat token range of the group's requests
    tok_end: int
    batch: int
    max_q: int
    kv_slots: torch.Tensor  # [B * max_kv] slots, row-major (garbage past seq_len is masked)
    masks: dict[int, torch.Tensor]  # window (0: full) -> [B, 1, max_q, max_kv] bool, True = attend
    pad_index: torch.Tensor | None  # [tokens] index into [B * max_q]; None when max_q == 1

    def mask(self, window: int) -> torch.Tensor:
        if window not in self.masks:
            raise ValueError(f"sliding window {window} was not declared to the attention backend")
        return self.masks[window]


def _split(seq_lens: list[int]) -> list[tuple[int, int]]:
    groups, start, longest = [], 0, 0
    for i, n in enumerate(seq_lens):
        longest_i = max(longest, n)
        if i > start and (i - start + 1) * longest_i > _GROUP_TOKENS:
            groups.append((start, i))
            start, longest_i = i, n
        longest = longest_i
    groups.append((start, len(seq_lens)))
    return groups


class TorchAttentionBackend(AttentionBackend):
    name = "torch"

    def __init__(
        self, kv_pool: KVPool, num_heads: int, head_dim: int, windows: tuple[int, ...] = ()
    ) -> None:
        super().__init__(kv_pool, num_heads, head_dim, windows)
        from radixserve_kernels.store_kv import (
            store_kv_ref,  # the reference KV store (see layers.ops)
        )

        self._store_kv = store_kv_ref

    def prepare(self, ctx: ForwardContext) -> None:
        qo = ctx.qo_indptr_cpu
        groups = []
        for b0, b1 in _split(ctx.seq_lens_cpu):
            groups.append(self._group(ctx, b0, b1, qo[b0], qo[b1]))
        ctx.attn_metadata = groups

    def init_cuda_graph_state(self, max_bs: int, max_context_len: int) -> None:
        raise NotImplementedError(_NO_GRAPHS)

    def prepare_captured_decode(self, ctx: ForwardContext) -> None:
        raise NotImplementedError(_NO_GRAPHS)

    def _group(self, ctx: ForwardContext, b0: int, b1: int, t0: int, t1: int) -> _Group:
        dev = ctx.req_to_token.device
        max_kv = max(ctx.seq_lens_cpu[b0:b1])
        max_q = max(ctx.extend_lens_cpu[b0:b1])
        slots = ctx.req_to_token[ctx.req_rows[b0:b1], :max_kv].long().reshape(-1)
        key_pos = torch.arange(max_kv, device=dev)
        q_pos = ctx.prefix_lens[b0:b1, None] + torch.arange(max_q, device=dev)[None, :]
        causal = key_pos[None, None, :] <= q_pos[:, :, None]
        valid = key_pos[None, :] < ctx.seq_lens[b0:b1, None]
        mask = causal & valid[:, None, :]
        masks = {0: mask.unsqueeze(1)}
        for w in self.windows:
            in_window = key_pos[None, None, :] > q_pos[:, :, None] - w
            masks[w] = (mask & in_window).unsqueeze(1)
        pad_index = None
        if max_q > 1:
            lens = torch.tensor(ctx.extend_lens_cpu[b0:b1], device=dev)
            req = torch.repeat_interleave(torch.arange(b1 - b0, device=dev), lens)
            start = ctx.qo_indptr[b0:b1].long() - t0
            pad_index = req * max_q + torch.arange(t1 - t0, device=dev) - start[req]
        return _Group(t0, t1, b1 - b0, max_q, slots, masks, pad_index)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer_id: int,
        scale: float,
        ctx: ForwardContext,
        window: int = 0,
        logit_cap: float = 0.0,
    ) -> torch.Tensor:
        k_buf, v_buf = ctx.kv_pool.layer(layer_id)
        self._store_kv(k_buf, v_buf, ctx.out_cache_loc, k, v)
        out = torch.empty_like(q)
        for g in ctx.attn_metadata:
            out[g.tok_start : g.tok_end] = self._attend(
                q[g.tok_start : g.tok_end], k_buf, v_buf, g, scale, window, logit_cap
            )
        return out

    @staticmethod
    def _attend(
        q: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor, g: _Group, scale: float,
        window: int, logit_cap: float,
    ) -> torch.Tensor:  # fmt: skip
        heads, dim = q.shape[1], q.shape[2]
        if g.pad_index is None:
            qp = q
        else:
            qp = q.new_zeros((g.batch * g.max_q, heads, dim))
            qp.index_copy_(0, g.pad_index, q)
        qp = qp.view(g.batch, g.max_q, heads, dim).transpose(1, 2)
        # NOTE: index_select on the flat slots, not k_buf[kv_slots]: on CPU advanced indexing
        # gathers ~3x slower, and this gather runs twice per layer per step.
        kv_shape = (g.batch, -1, *k_buf.shape[1:])
        kp = k_buf.index_select(0, g.kv_slots).view(kv_shape).transpose(1, 2).to(q.dtype)
        vp = v_buf.index_select(0, g.kv_slots).view(kv_shape).transpose(1, 2).to(q.dtype)
        if logit_cap > 0:
            o = _capped_attention(qp, kp, vp, g.mask(window), scale, logit_cap)
        else:
            o = F.scaled_dot_product_attention(
                qp, kp, vp, attn_mask=g.mask(window), scale=scale, enable_gqa=kp.shape[1] != heads
            )
        o = o.transpose(1, 2).reshape(g.batch * g.max_q, heads, dim)
        return o if g.pad_index is None else o.index_select(0, g.pad_index)


def _capped_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float, cap: float
) -> torch.Tensor:
    """``softmax(mask(cap * tanh(scale * q.k / cap))) @ v`` in float32; ``[B, H, M, D]`` q,
    ``[B, Hkv, N, D]`` k/v (GQA: each KV head serves ``H / Hkv`` query heads)."""
    rep = q.shape[1] // k.shape[1]
    kf = k.float().repeat_interleave(rep, dim=1)
    vf = v.float().repeat_interleave(rep, dim=1)
    s = torch.matmul(q.float(), kf.transpose(-1, -2)) * scale
    s = cap * torch.tanh(s / cap)
    s = s.masked_fill(~mask, float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), vf).to(q.dtype)
