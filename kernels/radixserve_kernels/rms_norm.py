"""RMSNorm.

    out[t, :] = x[t, :] * rsqrt(mean(x[t, :]^2) + eps) * weight

x: [T, N] (any leading dims, flattened), weight: [N], out: like x. The statistics and the product
are computed in fp32 and rounded once to x's dtype. One program normalises one row; the whole row
sits in registers (N <= 65536).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from radixserve_kernels._common import check, check_float, check_last_contiguous, next_pow2

MAX_N = 65536


@triton.jit
def _rms_norm_kernel(
    x_ptr,
    w_ptr,
    out_ptr,
    stride_xt,
    stride_ot,
    N,
    eps,
    BLOCK_N: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_N)
    mask = offs < N
    x = tl.load(x_ptr + row * stride_xt + offs, mask=mask, other=0.0).to(tl.float32)
    rstd = tl.rsqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = x * rstd * w
    tl.store(out_ptr + row * stride_ot + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def norm_launch_config(n: int) -> tuple[int, int]:
    """(BLOCK_N, num_warps) for a row of n elements: about 8 elements (16 B) per thread."""
    block = next_pow2(n)
    return block, max(1, min(16, block // 512))


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Launch RMSNorm over the last dim of x; returns out (allocated when None)."""
    check_float("x", x)
    n = x.shape[-1]
    check(weight.shape == (n,), f"weight must be [{n}], got {tuple(weight.shape)}")
    check(n <= MAX_N, f"hidden size {n} > {MAX_N} is not supported")
    check(weight.is_contiguous(), "weight must be contiguous")
    x2 = x.reshape(-1, n)
    check_last_contiguous("x", x2)
    if out is None:
        out = torch.empty_like(x)
    check(out.shape == x.shape and out.dtype == x.dtype, "out must match x in shape and dtype")
    o2 = out.view(-1, n)
    check_last_contiguous("out", o2)
    t = x2.shape[0]
    if t == 0:
        return out
    block, warps = norm_launch_config(n)
    _rms_norm_kernel[(t,)](
        x2, weight, o2, x2.stride(0), o2.stride(0), n, eps, BLOCK_N=block, num_warps=warps
    )
    return out


def rms_norm_ref(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Pure-torch RMSNorm with the kernel's rounding (fp32 math, one final cast)."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    if out is None:
        return y.to(x.dtype)
    out.copy_(y)
    return out
