"""Decode attention over the paged (slot-indexed) KV cache, GQA, split-KV.

For request b with KV slots idx = kv_indices[kv_indptr[b]:kv_indptr[b+1]] (length L_b), query head
h and its KV head g = h // (Hq / Hkv):

    s[j] = sm_scale * q[b, h] . k_buffer[idx[j], g]           (j < L_b)
    s[j] = logit_cap * tanh(s[j] / logit_cap)                  (only when logit_cap > 0)
    o[b, h] = sum_j softmax(s)[j] * v_buffer[idx[j], g]

q: [B, Hq, D], k_buffer/v_buffer: [num_slots, Hkv, D], kv_indptr: [B+1] int, kv_indices: int,
out: [B, Hq, D] in q's dtype (zeros for an empty request). The cap is Gemma 2's attention logit
soft-capping (transformers `eager_attention_forward`: scores * scaling, then cap * tanh(. / cap));
sm_scale is any scale (Gemma: query_pre_attn_scalar ** -0.5). D is any size up to 256 (padded to
BLOCK_D = next power of two, masked).

Sliding-window layers need nothing here: build kv_indices with build_kv_indices(..., window=W),
which keeps each request's last min(L_b, W) slots (positions k with p - W < k <= p for the query
at p = L_b - 1), so this kernel reads the window only and its time stays flat in L_b.

Stage 1, grid (B, Hkv, S): the program for (b, g, split) takes the split-th of S equal slices of
request b's KV and all Hq/Hkv query heads of group g together (one tl.dot of [heads, D] x [D, N]
per block, so each K/V row is read once for the group); it writes an fp32 partial output and its
log-sum-exp (base 2). Stage 2, grid (B, Hq), merges the S partials. S (num_kv_splits) is chosen so
that B * Hkv * S covers the GPU about twice, so one long request fills it too; it depends only on
B and Hkv (no host sync; fixed shapes under CUDA graphs).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from radixserve_kernels._common import check, check_float, check_int, device_sms, next_pow2

LOG2E = 1.4426950408889634
MAX_SPLITS = 32


@triton.jit
def _decode_stage1_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    kv_indptr_ptr,
    kv_indices_ptr,
    mid_o_ptr,
    mid_lse_ptr,
    sm_scale,
    logit_cap,
    stride_qb,
    stride_qh,
    stride_kbs,
    stride_kbh,
    stride_vbs,
    stride_vbh,
    stride_mob,
    stride_moh,
    stride_mos,
    stride_mlb,
    stride_mlh,
    D,
    NUM_SPLITS,
    GROUP: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    USE_CAP: tl.constexpr,
):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    offs_g = tl.arange(0, BLOCK_H)
    heads = kvh * GROUP + offs_g
    mask_h = offs_g < GROUP
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    start = tl.load(kv_indptr_ptr + b).to(tl.int64)
    seq_len = (tl.load(kv_indptr_ptr + b + 1) - start).to(tl.int32)
    chunk = tl.cdiv(tl.cdiv(seq_len, NUM_SPLITS), BLOCK_N) * BLOCK_N
    lo = split * chunk
    hi = tl.minimum(lo + chunk, seq_len)

    q_ptrs = q_ptr + b.to(tl.int64) * stride_qb + heads[:, None] * stride_qh + offs_d[None, :]
    q = tl.load(q_ptrs, mask=mask_h[:, None] & mask_d[None, :], other=0.0)
    m = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_sum = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    for n in range(lo, hi, BLOCK_N):
        offs_n = n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < hi
        loc = tl.load(kv_indices_ptr + start + offs_n, mask=mask_n, other=0).to(tl.int64)
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k = tl.load(
            k_ptr + loc[:, None] * stride_kbs + kvh * stride_kbh + offs_d[None, :],
            mask=kv_mask,
            other=0.0,
        )
        s = tl.dot(q, tl.trans(k))
        if USE_CAP:
            # tanh(x) = 1 - 2 / (exp(2x) + 1): saturates to +-1 without inf - inf.
            s = (
                logit_cap
                * (1.0 - 2.0 / (tl.exp(2.0 * s * sm_scale / logit_cap) + 1.0))
                * 1.4426950408889634
            )
        else:
            s = s * (sm_scale * 1.4426950408889634)
        s = tl.where(mask_n[None, :], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        alpha = tl.exp2(m - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_sum = l_sum * alpha + tl.sum(p, 1)
        v = tl.load(
            v_ptr + loc[:, None] * stride_vbs + kvh * stride_vbh + offs_d[None, :],
            mask=kv_mask,
            other=0.0,
        )
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m = m_new

    # NOTE: an empty slice leaves m = -inf, l = 0: it stores o = 0 and lse = -inf, which stage 2
    # weighs by exp2(-inf) = 0.
    l_safe = tl.where(l_sum > 0, l_sum, 1.0)
    mid = mid_o_ptr + b.to(tl.int64) * stride_mob + heads[:, None] * stride_moh
    mid += split * stride_mos + offs_d[None, :]
    tl.store(mid, acc / l_safe[:, None], mask=mask_h[:, None] & mask_d[None, :])
    lse_ptrs = mid_lse_ptr + b.to(tl.int64) * stride_mlb + heads * stride_mlh + split
    tl.store(lse_ptrs, m + tl.log2(l_safe), mask=mask_h)


@triton.jit
def _decode_stage2_kernel(
    mid_o_ptr,
    mid_lse_ptr,
    o_ptr,
    stride_mob,
    stride_moh,
    stride_mos,
    stride_mlb,
    stride_mlh,
    stride_ob,
    stride_oh,
    D,
    NUM_SPLITS,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    mask_s = offs_s < NUM_SPLITS
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    lse = tl.load(
        mid_lse_ptr + b * stride_mlb + h * stride_mlh + offs_s, mask=mask_s, other=float("-inf")
    )
    m = tl.max(lse, 0)
    m = tl.where(m == float("-inf"), 0.0, m)
    w = tl.exp2(lse - m)
    denom = tl.sum(w, 0)
    mo_ptrs = mid_o_ptr + b * stride_mob + h * stride_moh
    mo_ptrs += offs_s[:, None] * stride_mos + offs_d[None, :]
    mo = tl.load(mo_ptrs, mask=mask_s[:, None] & mask_d[None, :], other=0.0)
    o = tl.sum(w[:, None] * mo, 0) / tl.where(denom > 0, denom, 1.0)
    tl.store(
        o_ptr + b * stride_ob + h * stride_oh + offs_d, o.to(o_ptr.dtype.element_ty), mask=mask_d
    )


def default_num_kv_splits(batch: int, num_kv_heads: int, device: torch.device) -> int:
    """A power of two (<= MAX_SPLITS) so that batch * Hkv * splits is about 4 programs per SM.

    Measured on an H100 (bench/results): B=1 L=4096 is best at 32, B=8 L=8192 at 8, B=64 L=2048
    at 1. A power of two keeps stage 2's split axis free of padding.
    """
    per_split = max(1, batch * num_kv_heads)
    want = max(1, 4 * device_sms(device) // per_split)
    return min(MAX_SPLITS, 1 << (want.bit_length() - 1))


def decode_launch_config(device: torch.device, head_dim: int = 128) -> tuple[int, int, int]:
    """(BLOCK_N, num_warps, num_stages) for stage 1.

    head_dim > 128 (BLOCK_D = 256, Gemma's 256) takes (32, 4, 2). Registers, not shared memory,
    are what binds: compiled offline for sm_90 (triton 3.9, no GPU; cuobjdump resource usage),
    (64, 4, 3) at BLOCK_D = 256 uses 42 KB of shared memory (far below Hopper's 227 KB a block:
    the gathered K/V loads are not multi-buffered) but 255 registers and a 536-byte spill stack;
    (32, 4, 2) uses 25 KB, 248 registers and no stack. (At BLOCK_D = 128, (64, 4, 3): 22 KB,
    255 registers, 88 bytes.) Timed on an H200 (bench/bench_swa.py, d256, B=32 over a 4096
    window, CUDA graph): 253 us, 100 % of the copy ceiling, against 261 us for (64, 4, 3).
    """
    if device.type != "cuda":
        return 16, 4, 1
    if head_dim > 128:
        return 32, 4, 2
    return 64, 4, 3


def decode_attention(
    q: torch.Tensor,
    k_buffer: torch.Tensor,
    v_buffer: torch.Tensor,
    kv_indptr: torch.Tensor,
    kv_indices: torch.Tensor,
    sm_scale: float,
    logit_cap: float = 0.0,
    num_kv_splits: int | None = None,
    out: torch.Tensor | None = None,
    config: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """Paged GQA decode attention; returns out [B, Hq, D]. config overrides decode_launch_config."""
    for name, x in (("q", q), ("k_buffer", k_buffer), ("v_buffer", v_buffer)):
        check_float(name, x)
        check(x.dim() == 3 and x.stride(2) == 1, f"{name} must be 3-D, contiguous in its last dim")
    check_int("kv_indptr", kv_indptr)
    check_int("kv_indices", kv_indices)
    bsz, hq, d = q.shape
    hkv = k_buffer.shape[1]
    check(k_buffer.shape[2] == d and v_buffer.shape == k_buffer.shape, "k/v_buffer: [S, Hkv, D]")
    check(k_buffer.dtype == q.dtype and v_buffer.dtype == q.dtype, "q and the pool share a dtype")
    check(hq % hkv == 0, f"Hq={hq} must be a multiple of Hkv={hkv}")
    check(kv_indptr.numel() >= bsz + 1, "kv_indptr must have B + 1 entries")
    if out is None:
        out = torch.empty_like(q)
    check(out.shape == q.shape and out.stride(2) == 1, "out must be [B, Hq, D]")
    if bsz == 0:
        return out
    splits = num_kv_splits or default_num_kv_splits(bsz, hkv, q.device)
    group = hq // hkv
    block_d = next_pow2(d)
    block_n, warps, stages = config or decode_launch_config(q.device, d)
    mid_o = torch.empty(bsz, hq, splits, d, dtype=torch.float32, device=q.device)
    mid_lse = torch.empty(bsz, hq, splits, dtype=torch.float32, device=q.device)
    _decode_stage1_kernel[(bsz, hkv, splits)](
        q,
        k_buffer,
        v_buffer,
        kv_indptr,
        kv_indices,
        mid_o,
        mid_lse,
        float(sm_scale),
        float(logit_cap),
        q.stride(0),
        q.stride(1),
        k_buffer.stride(0),
        k_buffer.stride(1),
        v_buffer.stride(0),
        v_buffer.stride(1),
        mid_o.stride(0),
        mid_o.stride(1),
        mid_o.stride(2),
        mid_lse.stride(0),
        mid_lse.stride(1),
        d,
        splits,
        GROUP=group,
        BLOCK_H=max(16, next_pow2(group)),
        BLOCK_N=block_n,
        BLOCK_D=block_d,
        USE_CAP=logit_cap > 0,
        num_warps=warps,
        num_stages=stages,
    )
    _decode_stage2_kernel[(bsz, hq)](
        mid_o,
        mid_lse,
        out,
        mid_o.stride(0),
        mid_o.stride(1),
        mid_o.stride(2),
        mid_lse.stride(0),
        mid_lse.stride(1),
        out.stride(0),
        out.stride(1),
        d,
        splits,
        BLOCK_S=next_pow2(splits),
        BLOCK_D=block_d,
        num_warps=4 if block_d * next_pow2(splits) >= 2048 else 1,
    )
    return out


def _attend_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sm_scale: float, logit_cap: float, mask
) -> torch.Tensor:
    """fp32 attention of q [M, Hq, D] over k, v [N, Hkv, D] with an optional bool mask [M, N]."""
    group = q.shape[1] // k.shape[1]
    kf = k.float().repeat_interleave(group, dim=1)
    vf = v.float().repeat_interleave(group, dim=1)
    s = torch.einsum("mhd,nhd->hmn", q.float(), kf) * sm_scale
    if logit_cap > 0:
        s = logit_cap * torch.tanh(s / logit_cap)
    if mask is not None:
        s = s.masked_fill(~mask[None], float("-inf"))
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # a fully masked row gives 0
    return torch.einsum("hmn,nhd->mhd", p, vf)


def decode_attention_ref(
    q: torch.Tensor,
    k_buffer: torch.Tensor,
    v_buffer: torch.Tensor,
    kv_indptr: torch.Tensor,
    kv_indices: torch.Tensor,
    sm_scale: float,
    logit_cap: float = 0.0,
    num_kv_splits: int | None = None,
    out: torch.Tensor | None = None,
    config: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """Pure-torch decode attention (fp32 math), looping over requests."""
    if out is None:
        out = torch.empty_like(q)
    for b in range(q.shape[0]):
        idx = kv_indices[int(kv_indptr[b]) : int(kv_indptr[b + 1])].long()
        if idx.numel() == 0:
            out[b] = 0
            continue
        o = _attend_ref(q[b : b + 1], k_buffer[idx], v_buffer[idx], sm_scale, logit_cap, None)
        out[b] = o[0].to(out.dtype)
    return out
