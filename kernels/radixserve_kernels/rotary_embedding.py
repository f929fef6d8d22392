"""Rotary position embedding (RoPE), applied in place to q and k.

For token t at position p = positions[t], with c = cos_sin_cache[p, :R/2] and
s = cos_sin_cache[p, R/2:R] (R = rotary dim <= head dim D), every head's first R dims are split into
pairs (x1, x2) and rotated:

    x1' = x1 * c - x2 * s
    x2' = x2 * c + x1 * s

neox layout (is_neox=True): x1 = x[:R/2], x2 = x[R/2:R]; GPT-J / interleaved layout: x1 = x[0:R:2],
x2 = x[1:R:2]. Dims past R are left as they are. q: [T, Hq, D] or [T, Hq*D], k: [T, Hk, D] or
[T, Hk*D] (strided views of a fused qkv output are fine), positions: [T] int, cos_sin_cache:
[max_pos, R] (any float dtype; math in fp32). Llama-3 frequency scaling is only a different cache:
see `build_cos_sin_cache`. One program rotates every head of one token.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from radixserve_kernels._common import check, check_float, check_int, next_pow2


@triton.jit
def _rotate_heads(
    base_ptr,
    stride_h,
    H,
    cos,
    sin,
    HALF,
    IS_NEOX: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
):
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_HALF)
    if IS_NEOX:
        mask = (offs_h[:, None] < H) & (offs_d[None, :] < HALF)
        row = base_ptr + offs_h[:, None] * stride_h + offs_d[None, :]
        x1 = tl.load(row, mask=mask, other=0.0).to(tl.float32)
        x2 = tl.load(row + HALF, mask=mask, other=0.0).to(tl.float32)
        y1 = x1 * cos[None, :] - x2 * sin[None, :]
        y2 = x2 * cos[None, :] + x1 * sin[None, :]
        tl.store(row, y1.to(base_ptr.dtype.element_ty), mask=mask)
        tl.store(row + HALF, y2.to(base_ptr.dtype.element_ty), mask=mask)
    else:
        # NOTE: load each head row contiguously (16-byte vectors) and pair (even, odd) elements by
        # a register reshape. Stride-2 loads/stores ran at 9% of copy on an H100, a
        # re-read of the row at j ^ 1 at 35%.
        offs_j = tl.arange(0, 2 * BLOCK_HALF)
        mask = (offs_h[:, None] < H) & (offs_j[None, :] < 2 * HALF)
        row = base_ptr + offs_h[:, None] * stride_h + offs_j[None, :]
        x = tl.load(row, mask=mask, other=0.0).to(tl.float32)
        x1, x2 = tl.split(tl.reshape(x, [BLOCK_H, BLOCK_HALF, 2]))
        y1 = x1 * cos[None, :] - x2 * sin[None, :]
        y2 = x2 * cos[None, :] + x1 * sin[None, :]
        y = tl.reshape(tl.join(y1, y2), [BLOCK_H, 2 * BLOCK_HALF])
        tl.store(row, y.to(base_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rope_kernel(
    pos_ptr,
    q_ptr,
    k_ptr,
    cache_ptr,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_cache0,
    HQ,
    HK,
    HALF,
    IS_NEOX: tl.constexpr,
    BLOCK_HQ: tl.constexpr,
    BLOCK_HK: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    pos = tl.load(pos_ptr + t).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_HALF)
    mask_d = offs_d < HALF
    cache_row = cache_ptr + pos * stride_cache0
    cos = tl.load(cache_row + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    sin = tl.load(cache_row + HALF + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    _rotate_heads(
        q_ptr + t * stride_qt,
        stride_qh,
        HQ,
        cos,
        sin,
        HALF,
        IS_NEOX,
        BLOCK_HQ,
        BLOCK_HALF,
    )
    _rotate_heads(
        k_ptr + t * stride_kt,
        stride_kh,
        HK,
        cos,
        sin,
        HALF,
        IS_NEOX,
        BLOCK_HK,
        BLOCK_HALF,
    )


def _as_heads(name: str, x: torch.Tensor, head_dim: int) -> torch.Tensor:
    if x.dim() == 2:
        check(x.shape[1] % head_dim == 0, f"{name}'s last dim must be a multiple of {head_dim}")
        x = x.view(x.shape[0], x.shape[1] // head_dim, head_dim)
    check(x.dim() == 3 and x.shape[2] == head_dim, f"{name} must be [T, H, D] or [T, H*D]")
    check(x.stride(2) == 1, f"{name} must be contiguous in its head dim")
    return x


def rotary_embedding(
    positions: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    is_neox: bool = True,
    head_dim: int | None = None,
) -> None:
    """Rotate q and k in place. head_dim is needed only when q and k are given 2-D."""
    check_int("positions", positions)
    check_float("q", q)
    check(q.dtype == k.dtype, "q and k must share a dtype")
    if head_dim is None:
        check(q.dim() == 3, "pass head_dim when q and k are 2-D")
        head_dim = q.shape[-1]
    q3 = _as_heads("q", q, head_dim)
    k3 = _as_heads("k", k, head_dim)
    t = positions.numel()
    check(q3.shape[0] == t and k3.shape[0] == t, "q, k and positions must agree on T")
    rot = cos_sin_cache.shape[1]
    check(rot % 2 == 0 and rot <= head_dim, "cos_sin_cache must be [max_pos, R], R even <= D")
    check(cos_sin_cache.stride(1) == 1, "cos_sin_cache must be contiguous in its last dim")
    if t == 0:
        return
    half = rot // 2
    hq, hk = q3.shape[1], k3.shape[1]
    block_half = next_pow2(half)
    warps = 4 if (hq + hk) * rot >= 4096 else 1
    _rope_kernel[(t,)](
        positions.reshape(-1),
        q3,
        k3,
        cos_sin_cache,
        q3.stride(0),
        q3.stride(1),
        k3.stride(0),
        k3.stride(1),
        cos_sin_cache.stride(0),
        hq,
        hk,
        half,
        IS_NEOX=is_neox,
        BLOCK_HQ=next_pow2(hq),
        BLOCK_HK=next_pow2(hk),
        BLOCK_HALF=block_half,
        num_warps=warps,
    )


def _rotate_ref(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, is_neox: bool) -> None:
    rot = cos.shape[-1] * 2
    xr = x[..., :rot].float()
    if is_neox:
        x1, x2 = xr[..., : rot // 2], xr[..., rot // 2 :]
    else:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
    y1 = x1 * cos - x2 * sin
    y2 = x2 * cos + x1 * sin
    y = torch.cat([y1, y2], -1) if is_neox else torch.stack([y1, y2], -1).flatten(-2)
    x[..., :rot] = y.to(x.dtype)


def rotary_embedding_ref(
    positions: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    is_neox: bool = True,
    head_dim: int | None = None,
) -> None:
    """Pure-torch RoPE with the kernel's contract (in place, fp32 math)."""
    head_dim = head_dim or q.shape[-1]
    q3 = q.view(q.shape[0], -1, head_dim)
    k3 = k.view(k.shape[0], -1, head_dim)
    cs = cos_sin_cache[positions.long()].float()
    half = cs.shape[-1] // 2
    cos, sin = cs[:, None, :half], cs[:, None, half:]
    _rotate_ref(q3, cos, sin, is_neox)
    _rotate_ref(k3, cos, sin, is_neox)


def llama3_inv_freq(
    inv_freq: torch.Tensor,
    factor: float,
    low_freq_factor: float,
    high_freq_factor: float,
    original_max_position_embeddings: int,
) -> torch.Tensor:
    """Llama-3.1 frequency scaling: long wavelengths / factor, short kept, smooth in between."""
    low_wavelen = original_max_position_embeddings / low_freq_factor
    high_wavelen = original_max_position_embeddings / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    smooth = (original_max_position_embeddings / wavelen - low_freq_factor) / (
        high_freq_factor - low_freq_factor
    )
    mid = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    out = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    is_mid = (wavelen <= low_wavelen) & (wavelen >= high_wavelen)
    return torch.where(is_mid, mid, out)


def rope_inv_freq(rotary_dim: int, base: float, rope_scaling: dict | None = None) -> torch.Tensor:
    """Inverse frequencies ``[R/2]`` (float64) for a Hugging Face ``rope_scaling`` dict.

    None or ``{"rope_type": "default"}``: plain RoPE; ``"linear"``: every frequency / ``factor``;
    ``"llama3"`` (``factor``, ``low_freq_factor``, ``high_freq_factor``,
    ``original_max_position_embeddings``): Llama-3.1 scaling. Older configs say ``"type"``.
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim))
    scaling = rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "llama3":
        return llama3_inv_freq(
            inv_freq,
            float(scaling["factor"]),
            float(scaling["low_freq_factor"]),
            float(scaling["high_freq_factor"]),
            int(scaling["original_max_position_embeddings"]),
        )
    if kind == "linear":
        return inv_freq / float(scaling["factor"])
    if kind != "default":
        raise ValueError(f"unsupported rope_scaling type {kind!r} (known: default, linear, llama3)")
    return inv_freq


def build_cos_sin_cache(
    rotary_dim: int,
    max_position: int,
    base: float = 10000.0,
    rope_scaling: dict | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """cos_sin_cache [max_position, rotary_dim]: cos(p * f_i) then sin(p * f_i), i < R/2.

    The frequencies f come from :func:`rope_inv_freq` (``rope_scaling`` as in Hugging Face
    configs); angles are computed in float64 and rounded once to ``dtype``.
    """
    inv_freq = rope_inv_freq(rotary_dim, base, rope_scaling)
    if device is not None:
        inv_freq = inv_freq.to(device)
    positions = torch.arange(max_position, dtype=torch.float64, device=inv_freq.device)
    freqs = torch.outer(positions, inv_freq)
    cache = torch.cat([freqs.cos(), freqs.sin()], dim=-1)
    return cache.to(dtype=dtype, device=device)
