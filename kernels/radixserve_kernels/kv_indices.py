"""KV index building: flatten each request's token slots into one index array.

For request b with pool row r = req_rows[b], length L_b = seq_lens[b] and, for a sliding-window
layer, window W (full attention when W is None or 0):

    n_b = L_b (full)  or  min(L_b, W) (windowed);   s_b = L_b - n_b  (kv_start, the first slot kept)
    kv_indptr[0] = 0, kv_indptr[b + 1] = kv_indptr[b] + n_b
    kv_indices[kv_indptr[b] + j] = req_to_token[r, s_b + j]      for j < n_b

With a window only the last min(L_b, W) positions are kept: a decode query at position p = L_b - 1
sees keys k with p - W < k <= p (transformers' `sliding_window_overlay`, kv_idx > q_idx - W), so a
decode kernel reading these indices reads the window only and its time stays flat in L_b.

req_to_token: [max_rows, max_ctx] int32, req_rows: [B] int, seq_lens: [B] int. kv_indptr [B+1]
and kv_indices [>= sum n_b] are int32. One program copies one request's row in BLOCK chunks.
A kv_indptr passed in must be the windowed one: build_kv_indptr(seq_lens, window). Passing both
kv_indptr and a large enough kv_indices keeps the call free of host syncs and of data-dependent
shapes (CUDA-graph capture); entries past kv_indptr[B] are left as they were.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from radixserve_kernels._common import check, check_int

BLOCK = 512


@triton.jit
def _build_kv_indices_kernel(
    req_to_token_ptr,
    req_rows_ptr,
    seq_lens_ptr,
    kv_indptr_ptr,
    kv_indices_ptr,
    stride_r2t0,
    window,
    BLOCK_SIZE: tl.constexpr,
    USE_WINDOW: tl.constexpr,
):
    b = tl.program_id(0)
    row = tl.load(req_rows_ptr + b).to(tl.int64)
    seq_len = tl.load(seq_lens_ptr + b)
    start = tl.load(kv_indptr_ptr + b).to(tl.int64)
    src = req_to_token_ptr + row * stride_r2t0
    n_keep = seq_len
    if USE_WINDOW:
        n_keep = tl.minimum(seq_len, window)
        src += seq_len - n_keep  # kv_start: the window's first position
    for off in range(0, n_keep, BLOCK_SIZE):
        offs = off + tl.arange(0, BLOCK_SIZE)
        mask = offs < n_keep
        idx = tl.load(src + offs, mask=mask, other=0)
        tl.store(kv_indices_ptr + start + offs, idx.to(kv_indices_ptr.dtype.element_ty), mask=mask)


def _window(window: int | None) -> int:
    """0 for full attention; checks that a window is a non-negative int."""
    if window is None:
        return 0
    check(int(window) == window and window >= 0, f"window must be an int >= 0, got {window!r}")
    return int(window)


def windowed_lens(seq_lens: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """min(seq_lens, window) (seq_lens itself when window is None or 0), on seq_lens' device."""
    w = _window(window)
    return seq_lens.clamp(max=w) if w else seq_lens


def build_kv_indptr(seq_lens: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """[0, cumsum(min(seq_lens, window))] as int32 on seq_lens' device (no host sync)."""
    indptr = torch.zeros(seq_lens.numel() + 1, dtype=torch.int32, device=seq_lens.device)
    indptr[1:] = torch.cumsum(windowed_lens(seq_lens, window), 0)
    return indptr


def build_kv_indices(
    req_to_token: torch.Tensor,
    req_rows: torch.Tensor,
    seq_lens: torch.Tensor,
    kv_indptr: torch.Tensor | None = None,
    kv_indices: torch.Tensor | None = None,
    window: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (kv_indptr, kv_indices), each request's last min(L_b, window) slots when window > 0.

    Pass a large enough kv_indices to avoid a host sync; a kv_indptr passed in must already be
    build_kv_indptr(seq_lens, window).
    """
    for name, x in (("req_to_token", req_to_token), ("req_rows", req_rows), ("seq_lens", seq_lens)):
        check_int(name, x)
    check(req_to_token.dim() == 2 and req_to_token.stride(1) == 1, "req_to_token must be 2-D")
    w = _window(window)
    b = req_rows.numel()
    check(seq_lens.numel() == b, "req_rows and seq_lens must both have B entries")
    if kv_indptr is None:
        kv_indptr = build_kv_indptr(seq_lens, w)
    check(kv_indptr.numel() >= b + 1, "kv_indptr must have B + 1 entries")
    if kv_indices is None:
        total = int(kv_indptr[b].item()) if b else 0
        kv_indices = torch.empty(max(total, 1), dtype=torch.int32, device=req_to_token.device)
    if b == 0:
        return kv_indptr, kv_indices
    _build_kv_indices_kernel[(b,)](
        req_to_token,
        req_rows,
        seq_lens,
        kv_indptr,
        kv_indices,
        req_to_token.stride(0),
        w,
        BLOCK_SIZE=BLOCK,
        USE_WINDOW=w > 0,
        num_warps=4,
    )
    return kv_indptr, kv_indices


def build_kv_indices_ref(
    req_to_token: torch.Tensor,
    req_rows: torch.Tensor,
    seq_lens: torch.Tensor,
    kv_indptr: torch.Tensor | None = None,
    kv_indices: torch.Tensor | None = None,
    window: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch version (loops over requests)."""
    w = _window(window)
    if kv_indptr is None:
        kv_indptr = build_kv_indptr(seq_lens, w)
    rows = []
    for r, n in zip(req_rows.tolist(), seq_lens.tolist(), strict=True):
        start = max(n - w, 0) if w else 0
        rows.append(req_to_token[r, start:n])
    flat = torch.cat(rows) if rows else req_to_token.new_empty(0)
    if kv_indices is None:
        kv_indices = torch.empty(max(flat.numel(), 1), dtype=torch.int32, device=flat.device)
    kv_indices[: flat.numel()] = flat.to(kv_indices.dtype)
    return kv_indptr, kv_indices
