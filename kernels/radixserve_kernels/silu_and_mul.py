"""SiLU-and-mul on the fused gate/up projection output.

    out[t, i] = silu(x[t, i]) * x[t, I + i],   silu(g) = g * sigmoid(g)

x: [T, 2I] (any leading dims), out: [T, I], same dtype; fp32 math, one rounding. The grid is
(T, cdiv(I, BLOCK)): each program reads BLOCK gate and BLOCK up elements of one row.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from radixserve_kernels._common import check, check_float, check_last_contiguous, next_pow2


@triton.jit
def _silu_and_mul_kernel(
    x_ptr,
    out_ptr,
    stride_xt,
    stride_ot,
    INTER,
    BLOCK: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < INTER
    g = tl.load(x_ptr + t * stride_xt + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(x_ptr + t * stride_xt + INTER + offs, mask=mask, other=0.0).to(tl.float32)
    y = g / (1.0 + tl.exp(-g)) * u
    tl.store(out_ptr + t * stride_ot + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Launch SiLU-and-mul; returns out [..., I] (allocated when None)."""
    check_float("x", x)
    check(x.shape[-1] % 2 == 0, "x's last dim must be even (gate and up halves)")
    inter = x.shape[-1] // 2
    x2 = x.reshape(-1, 2 * inter)
    check_last_contiguous("x", x2)
    if out is None:
        out = torch.empty(*x.shape[:-1], inter, dtype=x.dtype, device=x.device)
    check(out.shape == (*x.shape[:-1], inter), "out must be [..., I]")
    check(out.dtype == x.dtype, "out must have x's dtype")
    o2 = out.view(-1, inter)
    check_last_contiguous("out", o2)
    t = x2.shape[0]
    if t == 0 or inter == 0:
        return out
    block = min(1024, next_pow2(inter))
    warps = max(1, min(4, block // 256))
    grid = (t, triton.cdiv(inter, block))
    _silu_and_mul_kernel[grid](
        x2, o2, x2.stride(0), o2.stride(0), inter, BLOCK=block, num_warps=warps
    )
    return out


def silu_and_mul_ref(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Pure-torch silu(x[..., :I]) * x[..., I:], fp32 math, one rounding."""
    inter = x.shape[-1] // 2
    y = torch.nn.functional.silu(x[..., :inter].float()) * x[..., inter:].float()
    if out is None:
        return y.to(x.dtype)
    out.copy_(y)
    return out
