"""Fused residual add + RMSNorm, as a decoder layer needs it.

    residual[t, :] += x[t, :]                      (in place, rounded to residual's dtype)
    out[t, :] = rmsnorm(residual[t, :]) * weight   (fp32 math on the rounded residual)

x, residual: [T, N] (same shape and dtype), weight: [N]. Returns out (a new tensor unless `out`
is given; `out=x` is allowed and saves the allocation). One pass: x and residual are read once,
residual and out written once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from radixserve_kernels._common import check, check_float, check_last_contiguous
from radixserve_kernels.rms_norm import MAX_N, norm_launch_config


@triton.jit
def _fused_add_rms_norm_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    out_ptr,
    stride_xt,
    stride_rt,
    stride_ot,
    N,
    eps,
    BLOCK_N: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_N)
    mask = offs < N
    x = tl.load(x_ptr + row * stride_xt + offs, mask=mask, other=0.0).to(tl.float32)
    r = tl.load(res_ptr + row * stride_rt + offs, mask=mask, other=0.0).to(tl.float32)
    # NOTE: normalise the rounded sum, so the layer sees exactly the residual it stored.
    r = (r + x).to(res_ptr.dtype.element_ty)
    tl.store(res_ptr + row * stride_rt + offs, r, mask=mask)
    rf = r.to(tl.float32)
    rstd = tl.rsqrt(tl.sum(rf * rf, axis=0) / N + eps)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(
        out_ptr + row * stride_ot + offs, (rf * rstd * w).to(out_ptr.dtype.element_ty), mask=mask
    )


def fused_add_rms_norm(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """residual += x (in place); return rmsnorm(residual) * weight."""
    check_float("x", x)
    n = x.shape[-1]
    check(residual.shape == x.shape, "residual must have x's shape")
    check(residual.dtype == x.dtype, "residual must have x's dtype")
    check(weight.shape == (n,) and weight.is_contiguous(), f"weight must be contiguous [{n}]")
    check(n <= MAX_N, f"hidden size {n} > {MAX_N} is not supported")
    x2 = x.reshape(-1, n)
    r2 = residual.view(-1, n)
    check_last_contiguous("x", x2)
    check_last_contiguous("residual", r2)
    if out is None:
        out = torch.empty_like(x)
    check(out.shape == x.shape and out.dtype == x.dtype, "out must match x in shape and dtype")
    o2 = out.view(-1, n)
    check_last_contiguous("out", o2)
    t = x2.shape[0]
    if t == 0:
        return out
    block, warps = norm_launch_config(n)
    _fused_add_rms_norm_kernel[(t,)](
        x2,
        r2,
        weight,
        o2,
        x2.stride(0),
        r2.stride(0),
        o2.stride(0),
        n,
        eps,
        BLOCK_N=block,
        num_warps=warps,
    )
    return out


def fused_add_rms_norm_ref(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pure-torch version: the same in-place residual update and return value."""
    residual.copy_((residual.float() + x.float()).to(residual.dtype))
    rf = residual.float()
    y = rf * torch.rsqrt(rf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    if out is None:
        return y.to(x.dtype)
    out.copy_(y)
    return out
