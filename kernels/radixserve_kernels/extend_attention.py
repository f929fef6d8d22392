"""Extend (prefill) attention: new tokens attend to their cached prefix and causally to themselves.

Request b owns new tokens qo_indptr[b] .. qo_indptr[b+1] (E_b of them) and a cached prefix of P_b
tokens whose KV slots are kv_indices[kv_indptr[b] : kv_indptr[b+1]]. New token i (0 <= i < E_b)
with query head h and KV head g = h // (Hq / Hkv) sees the keys

    prefix j < P_b:   k_buffer[kv_indices[kv_indptr[b] + j], g]
    new    j <= i:    k[qo_indptr[b] + j, g]       (causal)

and o[qo_indptr[b] + i, h] = softmax(s) @ values with s = sm_scale * q . keys, then, when
logit_cap > 0, s = logit_cap * tanh(s / logit_cap) (Gemma 2's attention soft-capping, applied to
the scaled scores as in transformers' gemma2 `eager_attention_forward`).

Sliding window (sliding_window = W > 0; 0 = full attention): positions are relative to the end of
the passed prefix, new token i at P_b + i and prefix key j at j, and a key at position k is seen
from position p only when p - W < k <= p, i.e. p - k < W: the last W positions including the
token itself (transformers `sliding_window_overlay`: kv_idx > q_idx - sliding_window, the mask of
Mistral, Gemma 2/3 and Qwen2 sliding layers; flash-attn's window_size=(W - 1, 0)). Since the rule
is relative, kv_indices may hold the whole prefix or only its last >= W - 1 slots (e.g.
build_kv_indices(..., prefix_lens, window=W)); both give the same output. Whole KV blocks below
the window of a query tile are skipped, so a long prompt costs O(E_b * W), not O(E_b^2).

With custom_mask (bool/uint8, flattened row-major [E_b, P_b + E_b] per request starting at
mask_indptr[b]), the mask alone decides which of the P_b + E_b keys a token sees (no implicit
causal rule); a token that sees nothing gets zeros. A window cannot be combined with it (fold the
window into the mask: only the caller knows the positions of, say, a draft tree's tokens).

q: [T, Hq, D], k, v: [T, Hkv, D] (the new rows; they may also already be in the pool), o:
[T, Hq, D], k_buffer/v_buffer: [num_slots, Hkv, D], any D up to 256 (BLOCK_D = next power of two,
masked). Grid (Hq, cdiv(max E_b, BLOCK_M), B), the heaviest (last) query tiles first;
FlashAttention-2 style online softmax in base 2, fp32 accumulators; off-diagonal tiles run without
any mask arithmetic (with a window, only those crossing its lower edge are masked).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from radixserve_kernels._common import check, check_float, check_int, next_pow2
from radixserve_kernels.decode_attention import _attend_ref


@triton.jit
def _scores(q, k, sm_scale, logit_cap, USE_CAP: tl.constexpr):
    s = tl.dot(q, tl.trans(k))
    if USE_CAP:
        s = logit_cap * (1.0 - 2.0 / (tl.exp(2.0 * s * sm_scale / logit_cap) + 1.0))
        return s * 1.4426950408889634
    return s * (sm_scale * 1.4426950408889634)


@triton.jit
def _online_step(s, v, m, l_sum, acc, MASKED: tl.constexpr):
    """One online-softmax update with base-2 scores s [M, N] (-inf where masked)."""
    m_new = tl.maximum(m, tl.max(s, 1))
    m_use = m_new
    if MASKED:  # a row with nothing visible yet keeps m = -inf: avoid exp2(-inf - -inf)
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m - m_use)
    p = tl.exp2(s - m_use[:, None])
    l_sum = l_sum * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    acc = tl.dot(p.to(v.dtype), v, acc)
    return m_new, l_sum, acc


@triton.jit
def _extend_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    o_ptr,
    kbuf_ptr,
    vbuf_ptr,
    qo_indptr_ptr,
    kv_indptr_ptr,
    kv_indices_ptr,
    mask_ptr,
    mask_indptr_ptr,
    sm_scale,
    logit_cap,
    sliding_window,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_ot,
    stride_oh,
    stride_kbufs,
    stride_kbufh,
    stride_vbufs,
    stride_vbufh,
    D,
    GROUP: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    USE_MASK: tl.constexpr,
    USE_CAP: tl.constexpr,
    USE_WINDOW: tl.constexpr,
):
    h = tl.program_id(0)
    mblock = tl.num_programs(1) - 1 - tl.program_id(1)
    b = tl.program_id(2)
    q_start = tl.load(qo_indptr_ptr + b).to(tl.int64)
    q_len = (tl.load(qo_indptr_ptr + b + 1) - q_start).to(tl.int32)
    if mblock * BLOCK_M >= q_len:
        return
    kv_start = tl.load(kv_indptr_ptr + b).to(tl.int64)
    prefix_len = (tl.load(kv_indptr_ptr + b + 1) - kv_start).to(tl.int32)
    kvh = h // GROUP

    offs_m = mblock * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < q_len
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    rows = q_start + offs_m
    q = tl.load(
        q_ptr + rows[:, None] * stride_qt + h * stride_qh + offs_d[None, :],
        mask=mask_m[:, None] & mask_d[None, :],
        other=0.0,
    )
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_sum = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    mask_row = 0
    row_len = 0
    if USE_MASK:
        mask_row = tl.load(mask_indptr_ptr + b).to(tl.int64)
        row_len = prefix_len + q_len

    # Stage 1: the cached prefix, gathered through kv_indices. With a window, the tile's first row
    # (position prefix_len + m0) sees prefix keys j > prefix_len + m0 - W only: start there.
    p_lo = 0
    if USE_WINDOW:
        p_lo = tl.maximum(prefix_len + mblock * BLOCK_M - sliding_window + 1, 0)
    for n in range(p_lo, prefix_len, BLOCK_N):
        offs_n = n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < prefix_len
        loc = tl.load(kv_indices_ptr + kv_start + offs_n, mask=mask_n, other=0).to(tl.int64)
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k = tl.load(
            kbuf_ptr + loc[:, None] * stride_kbufs + kvh * stride_kbufh + offs_d[None, :],
            mask=kv_mask,
            other=0.0,
        )
        s = _scores(q, k, sm_scale, logit_cap, USE_CAP)
        valid = mask_n[None, :]
        if USE_MASK:
            cm = tl.load(
                mask_ptr + mask_row + offs_m[:, None] * row_len + offs_n[None, :],
                mask=mask_m[:, None] & mask_n[None, :],
                other=0,
            )
            valid = valid & (cm != 0)
        if USE_WINDOW:
            valid = valid & (prefix_len + offs_m[:, None] - offs_n[None, :] < sliding_window)
        s = tl.where(valid, s, float("-inf"))
        v = tl.load(
            vbuf_ptr + loc[:, None] * stride_vbufs + kvh * stride_vbufh + offs_d[None, :],
            mask=kv_mask,
            other=0.0,
        )
        m, l_sum, acc = _online_step(s, v, m, l_sum, acc, True)

    # Stage 2: the new tokens themselves. Tiles left of the diagonal need no mask at all, except,
    # with a window, the tiles that cross the window's lower edge: [lo, full_lo) is masked by the
    # window (row m0 sees keys > m0 - W; every row of the tile sees keys >= m0 + BLOCK_M - W), and
    # tiles below lo are skipped. Operands stay >= 0 before // (the interpreter floors, the GPU
    # truncates).
    lo = 0
    full_lo = 0
    if USE_MASK:
        full_hi = 0
        hi = q_len
    else:
        full_hi = mblock * BLOCK_M
        hi = tl.minimum(q_len, (mblock + 1) * BLOCK_M)
        if USE_WINDOW:
            lo = tl.maximum(mblock * BLOCK_M - sliding_window + 1, 0) // BLOCK_N * BLOCK_N
            full_lo = tl.maximum((mblock + 1) * BLOCK_M - sliding_window, 0)
            full_lo = tl.minimum(tl.maximum(tl.cdiv(full_lo, BLOCK_N) * BLOCK_N, lo), full_hi)
    if USE_WINDOW:  # the tiles that cross the window's lower edge
        for n in range(lo, full_lo, BLOCK_N):
            offs_n = n + tl.arange(0, BLOCK_N)
            kv_rows = q_start + offs_n
            k = tl.load(
                k_ptr + kv_rows[:, None] * stride_kt + kvh * stride_kh + offs_d[None, :],
                mask=mask_d[None, :],
                other=0.0,
            )
            s = _scores(q, k, sm_scale, logit_cap, USE_CAP)
            s = tl.where(offs_m[:, None] - offs_n[None, :] < sliding_window, s, float("-inf"))
            v = tl.load(
                v_ptr + kv_rows[:, None] * stride_vt + kvh * stride_vh + offs_d[None, :],
                mask=mask_d[None, :],
                other=0.0,
            )
            m, l_sum, acc = _online_step(s, v, m, l_sum, acc, True)
    for n in range(full_lo, full_hi, BLOCK_N):
        offs_n = n + tl.arange(0, BLOCK_N)
        kv_rows = q_start + offs_n
        k = tl.load(
            k_ptr + kv_rows[:, None] * stride_kt + kvh * stride_kh + offs_d[None, :],
            mask=mask_d[None, :],
            other=0.0,
        )
        s = _scores(q, k, sm_scale, logit_cap, USE_CAP)
        v = tl.load(
            v_ptr + kv_rows[:, None] * stride_vt + kvh * stride_vh + offs_d[None, :],
            mask=mask_d[None, :],
            other=0.0,
        )
        m, l_sum, acc = _online_step(s, v, m, l_sum, acc, False)
    for n in range(full_hi, hi, BLOCK_N):
        offs_n = n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < q_len
        kv_rows = q_start + offs_n
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k = tl.load(
            k_ptr + kv_rows[:, None] * stride_kt + kvh * stride_kh + offs_d[None, :],
            mask=kv_mask,
            other=0.0,
        )
        s = _scores(q, k, sm_scale, logit_cap, USE_CAP)
        if USE_MASK:
            cm = tl.load(
                mask_ptr + mask_row + offs_m[:, None] * row_len + prefix_len + offs_n[None, :],
                mask=mask_m[:, None] & mask_n[None, :],
                other=0,
            )
            valid = mask_n[None, :] & (cm != 0)
        else:
            valid = mask_n[None, :] & (offs_m[:, None] >= offs_n[None, :])
            if USE_WINDOW:
                valid = valid & (offs_m[:, None] - offs_n[None, :] < sliding_window)
        s = tl.where(valid, s, float("-inf"))
        v = tl.load(
            v_ptr + kv_rows[:, None] * stride_vt + kvh * stride_vh + offs_d[None, :],
            mask=kv_mask,
            other=0.0,
        )
        m, l_sum, acc = _online_step(s, v, m, l_sum, acc, True)

    l_safe = tl.where(l_sum > 0, l_sum, 1.0)
    out = acc / l_safe[:, None]
    tl.store(
        o_ptr + rows[:, None] * stride_ot + h * stride_oh + offs_d[None, :],
        out.to(o_ptr.dtype.element_ty),
        mask=mask_m[:, None] & mask_d[None, :],
    )


def extend_launch_config(
    device: torch.device, head_dim: int, max_extend_len: int = 8192
) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages); BLOCK_M must be a multiple of BLOCK_N.

    From the H100 sweeps in bench/results: (64, 64, 4, 3) is best up to a few thousand new tokens
    (343-347 TFLOP/s at L=2048 against 323-328 for 128 x 64); at L=8192 the 128-row tiles are
    a few percent ahead.

    head_dim > 128 (BLOCK_D = 256, Gemma's 256) takes (64, 32, 4, 2): timed on an H200
    (bench/bench_swa.py, d256, 8192 new tokens, bench/results/swa-h200.json) at 275 TFLOP/s
    against 251 for (128, 64, 8, 1), 162 for (64, 64, 8, 2) and 124 for (64, 32, 8, 2), though
    an offline sm_90 compile shows it spilling more (632-byte stack against 144 for 8 warps):
    the measurement decides.
    """
    if device.type != "cuda":
        return 16, 16, 4, 1
    if head_dim > 128:
        return 64, 32, 4, 2
    if max_extend_len <= 4096:
        return 64, 64, 4, 3
    return 128, 64, 8, 3


def _check_window(sliding_window: int | None, custom_mask: torch.Tensor | None) -> int:
    w = 0 if sliding_window is None else sliding_window
    check(int(w) == w and w >= 0, f"sliding_window must be an int >= 0, got {sliding_window!r}")
    check(not (w and custom_mask is not None), "sliding_window and custom_mask: fold the window in")
    return int(w)


def _mask_indptr(qo_indptr: torch.Tensor, kv_indptr: torch.Tensor) -> torch.Tensor:
    q_lens = (qo_indptr[1:] - qo_indptr[:-1]).long()
    p_lens = (kv_indptr[1 : q_lens.numel() + 1] - kv_indptr[: q_lens.numel()]).long()
    out = torch.zeros(q_lens.numel() + 1, dtype=torch.int64, device=qo_indptr.device)
    out[1:] = torch.cumsum(q_lens * (p_lens + q_lens), 0)
    return out


def extend_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    k_buffer: torch.Tensor,
    v_buffer: torch.Tensor,
    qo_indptr: torch.Tensor,
    kv_indptr: torch.Tensor,
    kv_indices: torch.Tensor,
    sm_scale: float,
    custom_mask: torch.Tensor | None = None,
    mask_indptr: torch.Tensor | None = None,
    logit_cap: float = 0.0,
    max_extend_len: int | None = None,
    config: tuple[int, int, int, int] | None = None,
    sliding_window: int = 0,
) -> torch.Tensor:
    """Ragged causal prefill over a paged prefix; writes and returns o.

    Pass max_extend_len (the largest E_b) to avoid a host sync; config overrides
    extend_launch_config; sliding_window = W > 0 limits every token to the last W positions.
    """
    for name, x in (("q", q), ("k", k), ("v", v), ("o", o), ("k_buffer", k_buffer),
                    ("v_buffer", v_buffer)):  # fmt: skip
        check_float(name, x)
        check(x.dim() == 3 and x.stride(2) == 1, f"{name} must be 3-D, contiguous in its last dim")
    for name, x in (("qo_indptr", qo_indptr), ("kv_indptr", kv_indptr), ("kv_indices", kv_indices)):
        check_int(name, x)
    t, hq, d = q.shape
    hkv = k.shape[1]
    check(k.shape == (t, hkv, d) and v.shape == k.shape, "k, v must be [T, Hkv, D]")
    check(o.shape == q.shape, "o must be [T, Hq, D]")
    check(k_buffer.shape[1:] == (hkv, d) and v_buffer.shape == k_buffer.shape, "pool shape")
    check(len({q.dtype, k.dtype, v.dtype, k_buffer.dtype, v_buffer.dtype}) == 1, "one dtype")
    check(hq % hkv == 0, f"Hq={hq} must be a multiple of Hkv={hkv}")
    bsz = qo_indptr.numel() - 1
    check(kv_indptr.numel() >= bsz + 1, "kv_indptr must have B + 1 entries")
    window = _check_window(sliding_window, custom_mask)
    if bsz <= 0 or t == 0:
        return o
    if max_extend_len is None:
        max_extend_len = int((qo_indptr[1:] - qo_indptr[:-1]).max().item())
    use_mask = custom_mask is not None
    if use_mask:
        check(custom_mask.dim() == 1, "custom_mask must be flattened to 1-D")
        if mask_indptr is None:
            mask_indptr = _mask_indptr(qo_indptr, kv_indptr)
        if custom_mask.dtype == torch.bool:
            custom_mask = custom_mask.view(torch.uint8)
    block_m, block_n, warps, stages = config or extend_launch_config(q.device, d, max_extend_len)
    check(block_m % block_n == 0, "BLOCK_M must be a multiple of BLOCK_N")
    grid = (hq, triton.cdiv(max(max_extend_len, 1), block_m), bsz)
    _extend_kernel[grid](
        q, k, v, o, k_buffer, v_buffer,
        qo_indptr, kv_indptr, kv_indices,
        custom_mask if use_mask else qo_indptr,
        mask_indptr if use_mask else qo_indptr,
        float(sm_scale), float(logit_cap), window,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        o.stride(0), o.stride(1),
        k_buffer.stride(0), k_buffer.stride(1), v_buffer.stride(0), v_buffer.stride(1),
        d,
        GROUP=hq // hkv,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_D=next_pow2(d),
        USE_MASK=use_mask,
        USE_CAP=logit_cap > 0,
        USE_WINDOW=window > 0,
        num_warps=warps,
        num_stages=stages,
    )  # fmt: skip
    return o


def extend_attention_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    k_buffer: torch.Tensor,
    v_buffer: torch.Tensor,
    qo_indptr: torch.Tensor,
    kv_indptr: torch.Tensor,
    kv_indices: torch.Tensor,
    sm_scale: float,
    custom_mask: torch.Tensor | None = None,
    mask_indptr: torch.Tensor | None = None,
    logit_cap: float = 0.0,
    max_extend_len: int | None = None,
    config: tuple[int, int, int, int] | None = None,
    sliding_window: int = 0,
) -> torch.Tensor:
    """Pure-torch version (fp32 math), looping over requests."""
    window = _check_window(sliding_window, custom_mask)
    if custom_mask is not None and mask_indptr is None:
        mask_indptr = _mask_indptr(qo_indptr, kv_indptr)
    for b in range(qo_indptr.numel() - 1):
        q0, q1 = int(qo_indptr[b]), int(qo_indptr[b + 1])
        idx = kv_indices[int(kv_indptr[b]) : int(kv_indptr[b + 1])].long()
        e, p = q1 - q0, idx.numel()
        if e == 0:
            continue
        keys = torch.cat([k_buffer[idx], k[q0:q1]])
        vals = torch.cat([v_buffer[idx], v[q0:q1]])
        if custom_mask is None:
            q_pos = torch.arange(p, p + e, device=q.device)[:, None]
            k_pos = torch.arange(p + e, device=q.device)[None, :]
            mask = k_pos <= q_pos
            if window:
                mask &= q_pos - k_pos < window
        else:
            m0 = int(mask_indptr[b])
            mask = custom_mask[m0 : m0 + e * (p + e)].view(e, p + e).bool()
        o[q0:q1] = _attend_ref(q[q0:q1], keys, vals, sm_scale, logit_cap, mask).to(o.dtype)
    return o
