from __future__ import annotations

import pytest
import torch

from radixserve_kernels import build_kv_indices, build_kv_indices_ref, build_kv_indptr
from tests.kernels.utils import cpu, device, gpu, poison


def _python_indices(table: list[list[int]], rows, lens, window) -> tuple[list[int], list[int]]:
    """Each request's slots at positions max(L - W, 0) .. L - 1 (all of 0 .. L - 1 without W)."""
    indptr, flat = [0], []
    for r, n in zip(rows, lens, strict=True):
        first = max(n - window, 0) if window else 0
        flat += [table[r][pos] for pos in range(first, n)]
        indptr.append(len(flat))
    return indptr, flat


def _check(lens, window, max_ctx, index_dtype=torch.int32, graph_sized=False) -> None:
    dev = device()
    gen = torch.Generator().manual_seed(len(lens) + (window or 0))
    b = len(lens)
    table = torch.randperm(10 * (b + 3) * max_ctx, generator=gen)[: (b + 3) * max_ctx]
    req_to_token = table.view(b + 3, max_ctx).to(dev, torch.int32)
    rows = torch.randperm(b + 3, generator=gen)[:b].tolist()
    req_rows = torch.tensor(rows, device=dev, dtype=index_dtype)
    seq_lens = torch.tensor(lens, device=dev, dtype=index_dtype)
    want_indptr, want = _python_indices(req_to_token.tolist(), rows, lens, window)
    indptr = indices = None
    if graph_sized:  # fixed-size buffers, as under CUDA graphs: the tail must stay untouched
        indptr = build_kv_indptr(seq_lens, window)
        indices = poison(torch.empty(b * max_ctx + 1, dtype=torch.int32, device=dev))
    got_indptr, got = build_kv_indices(req_to_token, req_rows, seq_lens, indptr, indices, window)
    assert got_indptr.tolist()[: b + 1] == want_indptr
    assert got.dtype == torch.int32
    assert got[: len(want)].tolist() == want
    if graph_sized:
        assert got is indices
        assert (got[len(want) :] == torch.iinfo(torch.int32).max).all()
    ref_indptr, ref = build_kv_indices_ref(req_to_token, req_rows, seq_lens, window=window)
    assert ref_indptr.tolist() == want_indptr and ref[: len(want)].tolist() == want


# Lengths around the window (0, 1, W - 1, W, W + 1) and far past it, against windows None and 0
# (full), 1, 5 and one longer than every request.
@cpu
@pytest.mark.parametrize("window", [None, 0, 1, 5, 100])
def test_kv_indices_cpu_window(window) -> None:
    _check([0, 1, 4, 5, 6, 37, 50], window, 50)


@cpu
def test_kv_indices_cpu_window_graph_sized_int64() -> None:
    """Preallocated indptr and indices (the CUDA-graph contract), int64 rows and lengths, and a
    row longer than the builder's 512-slot chunk."""
    _check([700, 3, 513], 600, 720, index_dtype=torch.int64, graph_sized=True)
    _check([700, 3, 513], None, 720, graph_sized=True)


@cpu
def test_kv_indptr_window_and_errors() -> None:
    lens = torch.tensor([0, 3, 9, 4], dtype=torch.int32)
    assert build_kv_indptr(lens).tolist() == [0, 0, 3, 12, 16]
    assert build_kv_indptr(lens, 4).tolist() == [0, 0, 3, 7, 11]
    assert build_kv_indptr(lens, 0).tolist() == [0, 0, 3, 12, 16]
    table = torch.zeros(4, 9, dtype=torch.int32)
    rows = torch.arange(4, dtype=torch.int32)
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match="window"):
            build_kv_indices(table, rows, lens, window=bad)


@gpu
@pytest.mark.parametrize("window", [None, 4096])
def test_kv_indices_gpu_window(window) -> None:
    _check([1, 4095, 4096, 4097, 9000, 0, 77], window, 9000, graph_sized=True)
