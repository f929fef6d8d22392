"""The one place that picks the implementation of the model's elementwise ops.

Layers call ``ops.rms_norm(...)`` etc. through this module (never a bound copy), so switching to the
Triton launchers of ``kernels/`` is one call to :func:`select` (or ``RADIXSERVE_OPS=triton``).
The signatures follow the launchers of ``kernels/``:

* ``rms_norm(x, w, eps) -> y``
* ``fused_add_rms_norm(x, residual, w, eps) -> (y, new_residual)`` (``x + residual``)
* ``silu_and_mul(x) -> silu(x[..., :d]) * x[..., d:]``
* ``rotary_embedding(positions, q, k, cos_sin_cache, is_neox) -> (q, k)``, ``[T, heads, dim]``
* ``store_kv(k_buf, v_buf, slots, k, v)`` writes ``k_buf[slots] = k`` (in place)
"""

from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

_NAMES = ("rms_norm", "fused_add_rms_norm", "silu_and_mul", "rotary_embedding", "store_kv")


def rms_norm_torch(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    var = xf.pow(2).mean(dim=-1, keepdim=True)
    return (xf * torch.rsqrt(var + eps)).to(x.dtype) * w


def fused_add_rms_norm_torch(
    x: torch.Tensor, residual: torch.Tensor, w: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    residual = x + residual
    return rms_norm_torch(residual, w, eps), residual


def silu_and_mul_torch(x: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1] // 2
    return F.silu(x[..., :d]) * x[..., d:]


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, is_neox: bool) -> torch.Tensor:
    rot = cos.shape[-1] * 2
    xr = x[..., :rot].float()
    if is_neox:
        x1, x2 = xr.chunk(2, dim=-1)
    else:  # GPT-J layout: interleaved pairs
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
    o1 = x1 * cos - x2 * sin
    o2 = x2 * cos + x1 * sin
    out = torch.cat((o1, o2), dim=-1) if is_neox else torch.stack((o1, o2), dim=-1).flatten(-2)
    if rot == x.shape[-1]:
        return out.to(x.dtype)
    return torch.cat((out.to(x.dtype), x[..., rot:]), dim=-1)


def rotary_embedding_torch(
    positions: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    is_neox: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin = cos_sin_cache[positions].unsqueeze(-2).chunk(2, dim=-1)
    return _rotate(q, cos, sin, is_neox), _rotate(k, cos, sin, is_neox)


def store_kv_torch(
    k_buf: torch.Tensor, v_buf: torch.Tensor, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> None:
    k_buf[slots] = k.to(k_buf.dtype)
    v_buf[slots] = v.to(v_buf.dtype)


rms_norm = rms_norm_torch
fused_add_rms_norm = fused_add_rms_norm_torch
silu_and_mul = silu_and_mul_torch
rotary_embedding = rotary_embedding_torch
store_kv = store_kv_torch
current = "torch"


def select(impl: str) -> None:
    """Bind the public ops to the ``torch`` references or the ``triton`` launchers."""
    global current
    if impl == "torch":
        table = {name: globals()[f"{name}_torch"] for name in _NAMES}
    elif impl == "triton":
        table = _triton_table()
    else:
        raise ValueError(f"unknown ops implementation {impl!r}; known: torch, triton")
    globals().update(table)
    current = impl
    logger.info("model ops: %s", impl)


def _triton_table() -> dict[str, object]:
    """The launchers of ``kernels/``, adapted to the signatures above (they work in place)."""
    import kernels

    def fused_add_rms_norm(x, residual, w, eps):
        return kernels.fused_add_rms_norm(x, residual, w, eps), residual  # residual += x

    def rotary_embedding(positions, q, k, cos_sin_cache, is_neox):
        kernels.rotary_embedding(positions, q, k, cos_sin_cache, is_neox)
        return q, k

    return {
        "rms_norm": kernels.rms_norm,
        "fused_add_rms_norm": fused_add_rms_norm,
        "silu_and_mul": kernels.silu_and_mul,
        "rotary_embedding": rotary_embedding,
        "store_kv": kernels.store_kv,
    }


if os.environ.get("RADIXSERVE_OPS", "torch") != "torch":
    select(os.environ["RADIXSERVE_OPS"])
