from __future__ import annotations

import pytest
import torch

from radixserve_kernels import decode_attention, decode_attention_ref
from radixserve_kernels.kv_indices import build_kv_indptr
from tests.kernels.utils import ATTN_REL_TOL, GPU_DTYPES, assert_close, cpu, device, gpu, poison


def _check_decode(seq_lens, hq, hkv, d, dtype, splits=None, logit_cap=0.0, config=None) -> None:
    dev = device()
    b = len(seq_lens)
    num_slots = sum(seq_lens) + 17
    lens = torch.tensor(seq_lens, device=dev, dtype=torch.int32)
    kv_indptr = build_kv_indptr(lens)
    kv_indices = torch.randperm(num_slots, device=dev)[: sum(seq_lens)].to(torch.int32)
    q = torch.randn(b, hq, d, device=dev, dtype=dtype)
    k_buf = torch.randn(num_slots, hkv, d, device=dev, dtype=dtype)
    v_buf = torch.randn(num_slots, hkv, d, device=dev, dtype=dtype)
    scale = d**-0.5
    out = poison(torch.empty_like(q))
    decode_attention(q, k_buf, v_buf, kv_indptr, kv_indices, scale, logit_cap, splits, out, config)
    ref = decode_attention_ref(q, k_buf, v_buf, kv_indptr, kv_indices, scale, logit_cap)
    assert_close(out, ref, dtype, rel=ATTN_REL_TOL)


@cpu
@pytest.mark.parametrize("splits", [None, 1, 3])
def test_decode_cpu_gqa(splits) -> None:
    _check_decode([1, 37, 100], 8, 2, 64, torch.float32, splits=splits)


@cpu
def test_decode_cpu_empty_request_mha_odd_dim_cap() -> None:
    _check_decode([0, 21], 3, 3, 40, torch.float32, splits=2, logit_cap=5.0)


@cpu
def test_decode_cpu_fp16_group8() -> None:
    _check_decode([19, 5], 8, 1, 64, torch.float16, splits=2)


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("splits", [None, 1, 16])
def test_decode_gpu_llama3_8b(dtype, splits) -> None:
    _check_decode([1, 513, 2048, 4097, 77], 32, 8, 128, dtype, splits=splits)


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_decode_gpu_logit_cap_batch1(dtype) -> None:
    _check_decode([8191], 32, 8, 128, dtype, logit_cap=30.0)
