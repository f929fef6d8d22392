"""Rotary position embedding with a cos/sin cache indexed by positions.

Supports the HF ``rope_type`` values ``default``, ``linear`` and ``llama3`` (Llama-3.1 frequency
scaling: long wavelengths divided by ``factor``, short ones kept, a smooth blend in between).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from services.worker.layers import ops

logger = logging.getLogger(__name__)


def _llama3_inv_freq(inv_freq: torch.Tensor, scaling: dict[str, Any]) -> torch.Tensor:
    factor = float(scaling["factor"])
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old_ctx = float(scaling["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_ctx / low, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = (wavelen >= old_ctx / high) & (wavelen <= old_ctx / low)
    return torch.where(is_medium, blended, scaled)


def rope_inv_freq(rot_dim: int, base: float, scaling: dict[str, Any] | None) -> torch.Tensor:
    """Inverse frequencies (float32, ``[rot_dim / 2]``) for the given HF rope scaling dict."""
    inv_freq = 1.0 / (base ** (torch.arange(0, rot_dim, 2, dtype=torch.float64) / rot_dim))
    rope_type = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if rope_type == "llama3":
        inv_freq = _llama3_inv_freq(inv_freq, scaling)
    elif rope_type == "linear":
        inv_freq = inv_freq / float(scaling["factor"])
    elif rope_type != "default":
        raise ValueError(f"unsupported rope_type {rope_type!r}; known: default, linear, llama3")
    return inv_freq.float()


class RotaryEmbedding(nn.Module):
    """Applies RoPE to ``q [T, H, D]`` and ``k [T, Hkv, D]`` at ``positions [T]``."""

    def __init__(
        self,
        head_dim: int,
        max_position: int,
        base: float,
        scaling: dict[str, Any] | None = None,
        is_neox: bool = True,
        rot_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.head_dim, self.is_neox = head_dim, is_neox
        rot_dim = rot_dim or head_dim
        inv_freq = rope_inv_freq(rot_dim, base, scaling)
        t = torch.arange(max_position, dtype=torch.float32, device=inv_freq.device)
        freqs = torch.outer(t, inv_freq.to(t.device))
        # NOTE: float32 whatever the model dtype: bf16 angles lose precision at long context.
        cache = torch.cat((freqs.cos(), freqs.sin()), dim=-1)
        self.register_buffer("cos_sin_cache", cache, persistent=False)

    def forward(
        self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return ops.rotary_embedding(positions, q, k, self.cos_sin_cache, self.is_neox)
