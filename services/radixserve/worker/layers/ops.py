"""The model's elementwise ops, chosen per model: an :class:`Ops` is handed to each layer when
the model is built, so two models in one process can run different implementations.

Two implementations, both taken from ``kernels/`` (one op per file): ``triton`` uses the launchers
and ``torch`` uses each file's pure-torch ``<op>_ref`` (the one reference of that op). Signatures:

* ``rms_norm(x, w, eps) -> y``
* ``fused_add_rms_norm(x, residual, w, eps) -> (y, residual)``: ``residual += x`` in place, then
  ``y = rms_norm(residual)``
* ``silu_and_mul(x) -> silu(x[..., :d]) * x[..., d:]``
* ``rotary_embedding(positions, q, k, cos_sin_cache, is_neox) -> (q, k)``, rotated in place,
  ``[T, heads, dim]``

The KV store is not here: each attention backend writes its own pool.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ops:
    """One implementation of every elementwise op a model layer calls."""

    name: str
    rms_norm: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
    fused_add_rms_norm: Callable[
        [torch.Tensor, torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]
    ]
    silu_and_mul: Callable[[torch.Tensor], torch.Tensor]
    rotary_embedding: Callable[
        [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool],
        tuple[torch.Tensor, torch.Tensor],
    ]


def _adapt(
    name: str,
    rms_norm: Callable[..., torch.Tensor],
    fused_add_rms_norm: Callable[..., torch.Tensor],
    silu_and_mul: Callable[..., torch.Tensor],
    rotary_embedding: Callable[..., None],
) -> Ops:
    """Wraps kernel-style functions (in place, returning None or only ``out``) as :class:`Ops`."""

    def fused(
        x: torch.Tensor, residual: torch.Tensor, w: torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return fused_add_rms_norm(x, residual, w, eps), residual

    def rope(
        positions: torch.Tensor,
        q: torch.Tensor,
        k: torch.Tensor,
        cos_sin_cache: torch.Tensor,
        is_neox: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rotary_embedding(positions, q, k, cos_sin_cache, is_neox)
        return q, k

    return Ops(name, rms_norm, fused, silu_and_mul, rope)


def _kernels() -> ModuleType:
    # NOTE: imported on first use, so TRITON_INTERPRET set by the caller (tests) is honoured.
    import radixserve_kernels

    return radixserve_kernels


def _torch_ops() -> Ops:
    k = _kernels()
    return _adapt(
        "torch",
        k.rms_norm_ref,
        k.fused_add_rms_norm_ref,
        k.silu_and_mul_ref,
        k.rotary_embedding_ref,
    )


def _triton_ops() -> Ops:
    k = _kernels()
    return _adapt("triton", k.rms_norm, k.fused_add_rms_norm, k.silu_and_mul, k.rotary_embedding)


_IMPLS: dict[str, Callable[[], Ops]] = {"torch": _torch_ops, "triton": _triton_ops}


def known_ops() -> list[str]:
    return sorted(_IMPLS)


@functools.cache
def get_ops(name: str = "torch") -> Ops:
    """The :class:`Ops` called ``name``; ValueError listing the known names when unknown."""
    if name not in _IMPLS:
        raise ValueError(f"unknown ops implementation {name!r}; known: {', '.join(known_ops())}")
    return _IMPLS[name]()
