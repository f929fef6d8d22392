"""Rotary position embedding with a cos/sin cache indexed by positions.

The cache and its frequencies (HF ``rope_type`` ``default``, ``linear`` and ``llama3``) come from
``kernels.rotary_embedding``, the one place RoPE scaling is written.
"""

from __future__ import annotations

import logging
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
        cache = build_cos_sin_cache(rot_dim or head_dim, max_position, base, scaling)
        self.register_buffer("cos_sin_cache", cache, persistent=False)

    def forward(
        self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ops.rotary_embedding(positions, q, k, self.cos_sin_cache, self.is_neox)
