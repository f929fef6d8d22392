from __future__ import annotations

import pytest
import torch

from radixserve_kernels import fused_add_rms_norm, fused_add_rms_norm_ref, rms_norm, rms_norm_ref
from tests.kernels.utils import GPU_DTYPES, assert_close, cpu, device, gpu, poison


def _check_rms_norm(t: int, n: int, dtype: torch.dtype) -> None:
    x = torch.randn(t, n, device=device(), dtype=dtype) * 3
    w = torch.rand(n, device=device(), dtype=dtype) + 0.5
    out = poison(torch.empty_like(x))
    rms_norm(x, w, 1e-6, out=out)
    assert_close(out, rms_norm_ref(x, w, 1e-6), dtype)


def _check_fused(t: int, n: int, dtype: torch.dtype) -> None:
    x = torch.randn(t, n, device=device(), dtype=dtype)
    res = torch.randn(t, n, device=device(), dtype=dtype) * 2
    w = torch.rand(n, device=device(), dtype=dtype) + 0.5
    res_ref = res.clone()
    out = poison(torch.empty_like(x))
    fused_add_rms_norm(x, res, w, 1e-5, out=out)
    ref = fused_add_rms_norm_ref(x, res_ref, w, 1e-5)
    assert_close(res, res_ref, dtype)
    assert_close(out, ref, dtype)


@cpu
@pytest.mark.parametrize("t,n", [(5, 33), (1, 64), (3, 300)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_rms_norm_cpu(t: int, n: int, dtype: torch.dtype) -> None:
    _check_rms_norm(t, n, dtype)


@cpu
@pytest.mark.parametrize("t,n", [(5, 33), (1, 64)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_fused_add_rms_norm_cpu(t: int, n: int, dtype: torch.dtype) -> None:
    _check_fused(t, n, dtype)


@cpu
def test_rms_norm_3d_and_default_out() -> None:
    x = torch.randn(2, 3, 48)
    w = torch.rand(48)
    assert_close(rms_norm(x, w), rms_norm_ref(x, w), torch.float32)


@gpu
@pytest.mark.parametrize("t", [1, 4097])
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_rms_norm_gpu(t: int, dtype: torch.dtype) -> None:
    _check_rms_norm(t, 4096, dtype)


@gpu
@pytest.mark.parametrize("t", [1, 4097])
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_fused_add_rms_norm_gpu(t: int, dtype: torch.dtype) -> None:
    _check_fused(t, 4096, dtype)
