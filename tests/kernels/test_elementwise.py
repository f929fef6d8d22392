"""SiLU-and-mul, KV store and KV index building."""

from __future__ import annotations

import pytest
import torch

from radixserve_kernels import (
    build_kv_indices,
    build_kv_indices_ref,
    silu_and_mul,
    silu_and_mul_ref,
    store_kv,
    store_kv_ref,
)
from tests.kernels.utils import GPU_DTYPES, assert_close, cpu, device, gpu, poison


def _check_silu(t: int, inter: int, dtype: torch.dtype) -> None:
    x = torch.randn(t, 2 * inter, device=device(), dtype=dtype) * 4
    out = poison(torch.empty(t, inter, device=device(), dtype=dtype))
    silu_and_mul(x, out=out)
    assert_close(out, silu_and_mul_ref(x), dtype)


def _check_store_kv(t: int, h: int, d: int, slots_n: int, dtype: torch.dtype) -> None:
    dev = device()
    qkv = torch.randn(t, (4 * h + 2 * h) * d, device=dev, dtype=dtype)
    k = qkv[:, 4 * h * d : 5 * h * d].view(t, h, d)  # strided views, as from a fused qkv output
    v = qkv[:, 5 * h * d :].view(t, h, d)
    slots = torch.randperm(slots_n, device=dev)[:t].to(torch.int32)
    kb, vb = (poison(torch.empty(slots_n, h, d, device=dev, dtype=dtype)) for _ in range(2))
    kb_ref, vb_ref = kb.clone(), vb.clone()
    store_kv(kb, vb, slots, k, v)
    store_kv_ref(kb_ref, vb_ref, slots, k, v)
    assert torch.equal(kb.isnan(), kb_ref.isnan()) and torch.equal(vb.isnan(), vb_ref.isnan())
    assert torch.equal(kb[slots.long()], kb_ref[slots.long()])
    assert torch.equal(vb[slots.long()], vb_ref[slots.long()])


def _check_kv_indices(rows: int, ctx: int, seq_lens: list[int]) -> None:
    dev = device()
    r2t = torch.randint(0, 1 << 20, (rows, ctx), device=dev, dtype=torch.int32)
    req_rows = torch.randperm(rows, device=dev)[: len(seq_lens)]
    lens = torch.tensor(seq_lens, device=dev, dtype=torch.int32)
    total = sum(seq_lens)
    kv_indices = poison(torch.empty(total + 3, dtype=torch.int32, device=dev))
    indptr, idx = build_kv_indices(r2t, req_rows, lens, kv_indices=kv_indices)
    indptr_ref, idx_ref = build_kv_indices_ref(r2t, req_rows, lens)
    assert torch.equal(indptr.cpu(), indptr_ref.cpu())
    assert torch.equal(idx[:total].cpu(), idx_ref[:total].cpu())
    assert (idx[total:] == torch.iinfo(torch.int32).max).all()  # nothing written past the end


@cpu
@pytest.mark.parametrize("t,inter", [(5, 33), (1, 64), (3, 1100)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_silu_and_mul_cpu(t: int, inter: int, dtype: torch.dtype) -> None:
    _check_silu(t, inter, dtype)


@cpu
@pytest.mark.parametrize("t,h,d", [(5, 3, 33), (1, 2, 64)])
def test_store_kv_cpu(t: int, h: int, d: int) -> None:
    _check_store_kv(t, h, d, 37, torch.float32)


@cpu
def test_build_kv_indices_cpu() -> None:
    _check_kv_indices(6, 700, [3, 0, 700, 1])
    _check_kv_indices(2, 16, [5])


@gpu
@pytest.mark.parametrize("t", [1, 4097])
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_silu_and_mul_gpu(t: int, dtype: torch.dtype) -> None:
    _check_silu(t, 14336, dtype)


@gpu
@pytest.mark.parametrize("t", [1, 2049])
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_store_kv_gpu(t: int, dtype: torch.dtype) -> None:
    _check_store_kv(t, 8, 128, 100_000, dtype)


@gpu
def test_build_kv_indices_gpu() -> None:
    _check_kv_indices(300, 8192, [1, 8192, 4097, 0] + [513] * 60)
