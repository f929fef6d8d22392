"""Shared helpers for the kernel tests: markers, tolerances, poisoning, comparison."""

from __future__ import annotations

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

# CPU interpreter tests: skipped where CUDA exists, since TRITON_INTERPRET is then off.
cpu = pytest.mark.skipif(HAS_CUDA, reason="CPU interpreter tests; this machine has CUDA")
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")

# ||out - ref|| / ||ref|| bounds, and max |out - ref| / max |ref| bounds, per dtype.
REL_TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
MAX_TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 4e-2}
ATTN_REL_TOL = {torch.float32: 1e-4, torch.float16: 3e-3, torch.bfloat16: 2e-2}

GPU_DTYPES = [torch.float16, torch.bfloat16]


def gpu(fn):
    """Mark a test as a GPU test (deselected by default; run with -m gpu)."""
    return pytest.mark.gpu(needs_cuda(fn))


def device() -> str:
    return "cuda" if HAS_CUDA else "cpu"


def poison(t: torch.Tensor) -> torch.Tensor:
    """Fill with NaN (floats) or a huge value (ints) so unwritten elements show."""
    if t.is_floating_point():
        return t.fill_(float("nan"))
    return t.fill_(torch.iinfo(t.dtype).max)


def assert_close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, rel=None) -> None:
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert torch.isfinite(out).all(), "unwritten (NaN) or non-finite elements in the output"
    o, r = out.double(), ref.double()
    scale = r.abs().max().clamp_min(1e-6)
    rel_err = ((o - r).norm() / r.norm().clamp_min(1e-12)).item()
    max_err = ((o - r).abs().max() / scale).item()
    assert rel_err < (rel or REL_TOL)[dtype], f"relative error {rel_err:.2e} ({dtype})"
    assert max_err < MAX_TOL[dtype] * (10 if rel else 1), f"max error {max_err:.2e} ({dtype})"
