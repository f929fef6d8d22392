"""KV index building: flatten each request's token slots into one index array.

For request b with pool row r = req_rows[b] and length L_b = seq_lens[b]:

    kv_indptr[0] = 0, kv_indptr[b + 1] = kv_indptr[b] + L_b
    kv_indices[kv_indptr[b] + j] = req_to_token[r, j]      for j < L_b

req_to_token: [max_rows, max_ctx] int32, req_rows: [B] int, seq_lens: [B] int. kv_indptr [B+1]
and kv_indices [>= sum L_b] are int32. One program copies one request's row in BLOCK chunks.
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
    BLOCK_SIZE: tl.constexpr,
):
    b = tl.program_id(0)
    row = tl.load(req_rows_ptr + b).to(tl.int64)
    seq_len = tl.load(seq_lens_ptr + b)
    start = tl.load(kv_indptr_ptr + b).to(tl.int64)
    src = req_to_token_ptr + row * stride_r2t0
    for off in range(0, seq_len, BLOCK_SIZE):
        offs = off + tl.arange(0, BLOCK_SIZE)
        mask = offs < seq_len
        idx = tl.load(src + offs, mask=mask, other=0)
        tl.store(kv_indices_ptr + start + offs, idx.to(kv_indices_ptr.dtype.element_ty), mask=mask)


def build_kv_indptr(seq_lens: torch.Tensor) -> torch.Tensor:
    """[0, cumsum(seq_lens)] as int32, computed on seq_lens' device (no host sync)."""
    indptr = torch.zeros(seq_lens.numel() + 1, dtype=torch.int32, device=seq_lens.device)
    indptr[1:] = torch.cumsum(seq_lens, 0)
    return indptr


def build_kv_indices(
    req_to_token: torch.Tensor,
    req_rows: torch.Tensor,
    seq_lens: torch.Tensor,
    kv_indptr: torch.Tensor | None = None,
    kv_indices: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (kv_indptr, kv_indices). Pass a large enough kv_indices to avoid a host sync."""
    for name, x in (("req_to_token", req_to_token), ("req_rows", req_rows), ("seq_lens", seq_lens)):
        check_int(name, x)
    check(req_to_token.dim() == 2 and req_to_token.stride(1) == 1, "req_to_token must be 2-D")
    b = req_rows.numel()
    check(seq_lens.numel() == b, "req_rows and seq_lens must both have B entries")
    if kv_indptr is None:
        kv_indptr = build_kv_indptr(seq_lens)
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
        BLOCK_SIZE=BLOCK,
        num_warps=4,
    )
    return kv_indptr, kv_indices


def build_kv_indices_ref(
    req_to_token: torch.Tensor,
    req_rows: torch.Tensor,
    seq_lens: torch.Tensor,
    kv_indptr: torch.Tensor | None = None,
    kv_indices: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch version (loops over requests)."""
    if kv_indptr is None:
        kv_indptr = build_kv_indptr(seq_lens)
    rows = [req_to_token[int(r), : int(n)] for r, n in zip(req_rows, seq_lens, strict=True)]
    flat = torch.cat(rows) if rows else req_to_token.new_empty(0)
    if kv_indices is None:
        kv_indices = torch.empty(max(flat.numel(), 1), dtype=torch.int32, device=flat.device)
    kv_indices[: flat.numel()] = flat.to(kv_indices.dtype)
    return kv_indptr, kv_indices
