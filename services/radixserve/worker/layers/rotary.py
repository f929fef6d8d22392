"""Rotary position embedding with a cos/sin cache indexed by positions.

The cache and its frequencies (HF ``rope_type`` ``default``, ``linear`` and ``llama3``) come from
``kernels.rotary_embedding``, the one place RoPE scaling is written; Phi-3's ``longrope`` cache is
built here (:func:`longrope_cos_sin_cache`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from radixserve.worker.layers.ops import Ops, get_ops

logger = logging.getLogger(__name__)


class RotaryEmbedding(nn.Module):
    """Applies RoPE to ``q [T, H, D]`` and ``k [T, Hkv, D]`` at ``positions [T]`` (in place)."""

    def __init__(
        self,
        head_dim: int,
        max_position: int,
        base: float,
        scaling: dict[str, Any] | None = None,
        is_neox: bool = True,
        rot_dim: int | None = None,
        ops: Ops | None = None,
    ) -> None:
        super().__init__()
        from radixserve_kernels.rotary_embedding import (
            build_cos_sin_cache,  # NOTE: see ops._kernels
        )

        self.head_dim, self.is_neox = head_dim, is_neox
        self.ops = ops or get_ops()
        # NOTE: float32 whatever the model dtype: bf16 angles lose precision at long context.
        rot_dim = rot_dim or head_dim
        if scaling is not None and scaling.get("rope_type") == "longrope":
            cache = longrope_cos_sin_cache(rot_dim, max_position, base, scaling)
        else:
            cache = build_cos_sin_cache(rot_dim, max_position, base, scaling)
        self.register_buffer("cos_sin_cache", cache, persistent=False)

    def forward(
        self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ops.rotary_embedding(positions, q, k, self.cos_sin_cache, self.is_neox)


def longrope_cos_sin_cache(
    rotary_dim: int, max_position: int, base: float, scaling: dict[str, Any]
) -> torch.Tensor:
    """LongRoPE (Phi-3 128k): ``[max_position, R]`` cos | sin, both times the attention factor.

    Frequencies ``1 / (ext * base^(2i/R))`` with ``ext`` = ``short_factor`` at positions below
    ``original_max_position_embeddings`` and ``long_factor`` from there on. NOTE: transformers
    switches every position of a forward to the long factors once the sequence passes the
    original length; a KV cache cannot re-rotate its keys, so here each position keeps the
    factors of its own position (equal to transformers while a sequence stays below it, and for
    the tokens generated after it when the prompt was shorter).
    """
    orig = int(scaling["original_max_position_embeddings"])
    factor = float(scaling.get("factor") or 1.0)
    attn = scaling.get("attention_factor")
    if attn is None:
        attn = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
    exponent = torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim
    parts = []
    for key, lo, hi in (("short_factor", 0, orig), ("long_factor", orig, max(orig, max_position))):
        ext = torch.tensor(scaling[key], dtype=torch.float64)
        if ext.numel() != rotary_dim // 2:
            raise ValueError(
                f"rope_scaling.{key} has {ext.numel()} entries, want {rotary_dim // 2}"
            )
        inv_freq = 1.0 / (ext * base**exponent)
        pos = torch.arange(lo, hi, dtype=torch.float64)
        parts.append(torch.outer(pos, inv_freq))
    freqs = torch.cat(parts)[:max_position]
    cache = torch.cat([freqs.cos() * attn, freqs.sin() * attn], dim=-1)
    return cache.to(torch.float32)
