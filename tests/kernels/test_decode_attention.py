from __future__ import annotations

import pytest
import torch

from radixserve_kernels import build_kv_indices, decode_attention, decode_attention_ref
from radixserve_kernels.kv_indices import build_kv_indptr
from tests.kernels.test_extend_attention import dense_attention
from tests.kernels.utils import ATTN_REL_TOL, GPU_DTYPES, assert_close, cpu, device, gpu, poison


def _check_decode(
    seq_lens, hq, hkv, d, dtype, splits=None, logit_cap=0.0, config=None, scale=None
) -> None:
    dev = device()
    b = len(seq_lens)
    num_slots = sum(seq_lens) + 17
    lens = torch.tensor(seq_lens, device=dev, dtype=torch.int32)
    kv_indptr = build_kv_indptr(lens)
    kv_indices = torch.randperm(num_slots, device=dev)[: sum(seq_lens)].to(torch.int32)
    q = torch.randn(b, hq, d, device=dev, dtype=dtype)
    k_buf = torch.randn(num_slots, hkv, d, device=dev, dtype=dtype)
    v_buf = torch.randn(num_slots, hkv, d, device=dev, dtype=dtype)
    scale = scale or d**-0.5
    out = poison(torch.empty_like(q))
    decode_attention(q, k_buf, v_buf, kv_indptr, kv_indices, scale, logit_cap, splits, out, config)
    ref = decode_attention_ref(q, k_buf, v_buf, kv_indptr, kv_indices, scale, logit_cap)
    assert_close(out, ref, dtype, rel=ATTN_REL_TOL)


def _check_window_decode(
    seq_lens, window, hq, hkv, d, dtype, cap=0.0, scale=None, splits=None, graph_sized=False
) -> None:
    """Decode over build_kv_indices(..., window=W) against dense attention of the last token over
    the whole sequence with the sliding-window mask (and against the ref on the same indices)."""
    dev = device()
    gen = torch.Generator().manual_seed(0)
    b, max_ctx = len(seq_lens), max(seq_lens) + 3
    num_slots = (b + 2) * max_ctx + 5
    req_to_token = torch.randperm(num_slots, generator=gen)[: (b + 2) * max_ctx]
    req_to_token = req_to_token.view(b + 2, max_ctx).to(dev, torch.int32)
    req_rows = torch.randperm(b + 2, generator=gen)[:b].to(dev)
    lens = torch.tensor(seq_lens, device=dev, dtype=torch.int32)
    q, k_buf, v_buf = (
        torch.randn(*shape, generator=gen).to(dev, dtype)
        for shape in ((b, hq, d), (num_slots, hkv, d), (num_slots, hkv, d))
    )
    indptr = indices = None
    if graph_sized:  # the CUDA-graph way: every size fixed up front, no host sync in the call
        indptr = build_kv_indptr(lens, window)
        indices = poison(torch.empty(b * max_ctx, dtype=torch.int32, device=dev))
    indptr, indices = build_kv_indices(req_to_token, req_rows, lens, indptr, indices, window)
    scale = scale or d**-0.5
    out = poison(torch.empty_like(q))
    decode_attention(q, k_buf, v_buf, indptr, indices, scale, cap, splits, out)
    ref = decode_attention_ref(q, k_buf, v_buf, indptr, indices, scale, cap)
    assert_close(out, ref, dtype, rel=ATTN_REL_TOL)
    dense = torch.zeros(q.shape, dtype=torch.float64, device=dev)
    for i, n in enumerate(seq_lens):
        slots = req_to_token[int(req_rows[i]), :n].long()  # positions 0 .. n - 1
        pos = torch.arange(n, device=dev)
        dense[i] = dense_attention(q[i : i + 1], pos[-1:], k_buf[slots], v_buf[slots], pos, scale,
                                   cap, window)[0]  # fmt: skip
    assert_close(ref, dense.to(dtype), dtype, rel=ATTN_REL_TOL)


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


@cpu
@pytest.mark.parametrize("d", [256, 80])
def test_decode_cpu_head_dims_cap_custom_scale(d) -> None:
    """Gemma's D 256 and a non-power-of-two D 80, soft-capped, with a non-default scale."""
    _check_decode([1, 45], 4, 2, d, torch.float32, splits=2, logit_cap=3.0, scale=0.3)
    _check_decode([33], 2, 1, d, torch.float16, scale=224**-0.5)


# Lengths 1, 5, 37, 64 against windows 1 (the token alone), 16 (below most lengths), 40 (between),
# 100 (beyond all: the same as full attention).
@cpu
@pytest.mark.parametrize("window", [1, 16, 40, 100])
def test_decode_cpu_sliding_window(window) -> None:
    _check_window_decode([1, 5, 37, 64], window, 4, 2, 64, torch.float32, splits=2)


@cpu
def test_decode_cpu_sliding_window_gemma_d256_cap_graph_sized() -> None:
    _check_window_decode([50, 9], 12, 4, 2, 256, torch.float32, cap=50.0, scale=224**-0.5,
                         graph_sized=True)  # fmt: skip


@cpu
def test_decode_cpu_sliding_window_odd_dim_fp16() -> None:
    _check_window_decode([30, 2, 17], 8, 6, 2, 80, torch.float16, cap=4.0, scale=0.2, splits=3)


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("splits", [None, 1, 16])
def test_decode_gpu_llama3_8b(dtype, splits) -> None:
    _check_decode([1, 513, 2048, 4097, 77], 32, 8, 128, dtype, splits=splits)


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_decode_gpu_logit_cap_batch1(dtype) -> None:
    _check_decode([8191], 32, 8, 128, dtype, logit_cap=30.0)


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("splits", [None, 1, 16])
def test_decode_gpu_gemma2_d256(dtype, splits) -> None:
    """D 256 with its own launch config (shared memory), soft-cap 50, scale 224 ** -0.5."""
    _check_decode([1, 700, 4097, 33], 16, 8, 256, dtype, splits, 50.0, scale=224**-0.5)


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_decode_gpu_odd_dim(dtype) -> None:
    _check_decode([1, 999, 64], 8, 2, 80, dtype, logit_cap=20.0, scale=0.1)


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize(("window", "d"), [(4096, 128), (1024, 256), (129, 128)])
def test_decode_gpu_sliding_window(dtype, window, d) -> None:
    _check_window_decode([1, 4095, 4096, 4097, 9000, 300], window, 16, 8, d, dtype,
                         graph_sized=True)  # fmt: skip
