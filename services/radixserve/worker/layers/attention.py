"""The attention layer: a thin module that hands q/k/v to the step's attention backend."""

from __future__ import annotations

import logging

import torch
from torch import nn

from radixserve.worker.forward_context import ForwardContext

logger = logging.getLogger(__name__)


class PagedAttention(nn.Module):
    """GQA attention of layer ``layer_id`` over the KV pool; the backend comes from ``ctx``.

    ``scale`` defaults to ``head_dim ** -0.5``; ``sliding_window`` W > 0 lets a query at position
    p see keys p - W < k <= p only; ``logit_cap`` > 0 soft-caps the scaled scores,
    ``cap * tanh(s / cap)`` (Gemma 2).
    """

    def __init__(
        self, layer_id: int, num_heads: int, num_kv_heads: int, head_dim: int,
        scale: float | None = None, sliding_window: int = 0, logit_cap: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.layer_id = layer_id
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.scale = head_dim**-0.5 if scale is None else scale
        self.sliding_window, self.logit_cap = sliding_window, logit_cap

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: ForwardContext
    ) -> torch.Tensor:
        """``q [T, H*D]``, ``k``/``v [T, Hkv*D]`` (already rotated) -> ``[T, H*D]``."""
        q = q.view(-1, self.num_heads, self.head_dim)
        k = k.view(-1, self.num_kv_heads, self.head_dim)
        v = v.view(-1, self.num_kv_heads, self.head_dim)
        out = ctx.attn_backend.forward(
            q, k, v, self.layer_id, self.scale, ctx,
            window=self.sliding_window, logit_cap=self.logit_cap,
        )  # fmt: skip
        return out.reshape(-1, self.num_heads * self.head_dim)
