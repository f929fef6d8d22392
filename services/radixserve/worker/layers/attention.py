"""The attention layer: a thin module that hands q/k/v to the step's attention backend."""

from __future__ import annotations

import logging

import torch
from torch import nn

from radixserve.worker.forward_context import ForwardContext

logger = logging.getLogger(__name__)


class PagedAttention(nn.Module):
    """GQA attention of layer ``layer_id`` over the KV pool; the backend comes from ``ctx``."""

    def __init__(self, layer_id: int, num_heads: int, num_kv_heads: int, head_dim: int) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.scale = head_dim**-0.5

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: ForwardContext
    ) -> torch.Tensor:
        """``q [T, H*D]``, ``k``/``v [T, Hkv*D]`` (already rotated) -> ``[T, H*D]``."""
        q = q.view(-1, self.num_heads, self.head_dim)
        k = k.view(-1, self.num_kv_heads, self.head_dim)
        v = v.view(-1, self.num_kv_heads, self.head_dim)
        out = ctx.attn_backend.forward(q, k, v, self.layer_id, self.scale, ctx)
        return out.reshape(-1, self.num_heads * self.head_dim)
