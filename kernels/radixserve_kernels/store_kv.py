"""KV store: write the new k/v rows of T tokens into one layer's KV pool.

    k_buffer[slots[t], h, :] = k[t, h, :]
    v_buffer[slots[t], h, :] = v[t, h, :]

k, v: [T, Hkv, D] (strided views of a fused qkv output are fine), k_buffer, v_buffer:
[num_slots, Hkv, D], slots: [T] int32/int64. Values are cast to the pool's dtype. One program
copies one token's Hkv*D elements for both k and v.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from radixserve_kernels._common import check, check_float, check_int, next_pow2


@triton.jit
def _store_kv_kernel(
    k_ptr,
    v_ptr,
    kbuf_ptr,
    vbuf_ptr,
    slots_ptr,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_kbufs,
    stride_kbufh,
    stride_vbufs,
    stride_vbufh,
    H,
    D,
    BLOCK_H: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    slot = tl.load(slots_ptr + t).to(tl.int64)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_h[:, None] < H) & (offs_d[None, :] < D)
    k = tl.load(
        k_ptr + t * stride_kt + offs_h[:, None] * stride_kh + offs_d[None, :], mask=mask, other=0.0
    )
    v = tl.load(
        v_ptr + t * stride_vt + offs_h[:, None] * stride_vh + offs_d[None, :], mask=mask, other=0.0
    )
    kdst = kbuf_ptr + slot * stride_kbufs + offs_h[:, None] * stride_kbufh + offs_d[None, :]
    vdst = vbuf_ptr + slot * stride_vbufs + offs_h[:, None] * stride_vbufh + offs_d[None, :]
    tl.store(kdst, k.to(kbuf_ptr.dtype.element_ty), mask=mask)
    tl.store(vdst, v.to(vbuf_ptr.dtype.element_ty), mask=mask)


def store_kv(
    k_buffer: torch.Tensor,
    v_buffer: torch.Tensor,
    slots: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
) -> None:
    """Scatter k and v rows into the pool at `slots` (in place on the buffers)."""
    check_int("slots", slots)
    for name, x in (("k", k), ("v", v), ("k_buffer", k_buffer), ("v_buffer", v_buffer)):
        check_float(name, x)
        check(x.dim() == 3 and x.stride(2) == 1, f"{name} must be 3-D, contiguous in its last dim")
    t, h, d = k.shape
    check(v.shape == (t, h, d), "v must have k's shape")
    check(k_buffer.shape[1:] == (h, d), "k_buffer must be [num_slots, Hkv, D]")
    check(v_buffer.shape == k_buffer.shape, "v_buffer must have k_buffer's shape")
    check(slots.numel() == t, "slots must have T entries")
    if t == 0:
        return
    block_h, block_d = next_pow2(h), next_pow2(d)
    warps = max(1, min(8, block_h * block_d // 256))  # about 8 elements (16 B) per thread
    _store_kv_kernel[(t,)](
        k,
        v,
        k_buffer,
        v_buffer,
        slots.reshape(-1),
        k.stride(0),
        k.stride(1),
        v.stride(0),
        v.stride(1),
        k_buffer.stride(0),
        k_buffer.stride(1),
        v_buffer.stride(0),
        v_buffer.stride(1),
        h,
        d,
        BLOCK_H=block_h,
        BLOCK_D=block_d,
        num_warps=warps,
    )


def store_kv_ref(
    k_buffer: torch.Tensor,
    v_buffer: torch.Tensor,
    slots: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
) -> None:
    """Pure-torch scatter with the same contract."""
    k_buffer[slots.long()] = k.to(k_buffer.dtype)
    v_buffer[slots.long()] = v.to(v_buffer.dtype)
