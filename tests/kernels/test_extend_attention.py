from __future__ import annotations

import pytest
import torch

from radixserve_kernels import extend_attention, extend_attention_ref
from radixserve_kernels.kv_indices import build_kv_indptr
from tests.kernels.utils import ATTN_REL_TOL, GPU_DTYPES, assert_close, cpu, device, gpu, poison


def _check_extend(prefix, extend, hq, hkv, d, dtype, config=None, masked=False, cap=0.0) -> None:
    dev = device()
    t = sum(extend)
    num_slots = sum(prefix) + 11
    qo_indptr = build_kv_indptr(torch.tensor(extend, device=dev))
    kv_indptr = build_kv_indptr(torch.tensor(prefix, device=dev))
    kv_indices = torch.randperm(num_slots, device=dev)[: max(sum(prefix), 1)].to(torch.int32)
    q = torch.randn(t, hq, d, device=dev, dtype=dtype)
    k = torch.randn(t, hkv, d, device=dev, dtype=dtype)
    v = torch.randn(t, hkv, d, device=dev, dtype=dtype)
    k_buf = torch.randn(num_slots, hkv, d, device=dev, dtype=dtype)
    v_buf = torch.randn(num_slots, hkv, d, device=dev, dtype=dtype)
    mask = None
    if masked:
        n = sum(e * (p + e) for p, e in zip(prefix, extend, strict=True))
        mask = torch.rand(n, device=dev) < 0.6
    scale = d**-0.5
    args = (q, k, v, None, k_buf, v_buf, qo_indptr, kv_indptr, kv_indices, scale, mask)
    o = poison(torch.empty_like(q))
    extend_attention(*args[:3], o, *args[4:], logit_cap=cap, config=config)
    ref = extend_attention_ref(*args[:3], torch.empty_like(q), *args[4:], logit_cap=cap)
    assert_close(o, ref, dtype, rel=ATTN_REL_TOL)


@cpu
@pytest.mark.parametrize("config", [None, (32, 16, 4, 1)])
def test_extend_cpu_ragged_prefix(config) -> None:
    _check_extend([0, 17, 5], [5, 1, 37], 4, 2, 64, torch.float32, config=config)


@cpu
def test_extend_cpu_custom_mask_odd_dim() -> None:
    _check_extend([3, 0], [6, 9], 2, 1, 40, torch.float32, masked=True)


@cpu
def test_extend_cpu_fp16_cap_decode_token() -> None:
    _check_extend([20], [1], 4, 4, 64, torch.float16, cap=4.0)


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_extend_gpu_llama3_8b(dtype) -> None:
    _check_extend([0, 300, 1000, 7], [1000, 77, 513, 1], 32, 8, 128, dtype)


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_extend_gpu_masked_and_cap(dtype) -> None:
    _check_extend([100, 0], [129, 64], 32, 8, 128, dtype, masked=True, cap=30.0)
