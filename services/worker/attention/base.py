"""The attention backend interface."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import torch

from services.worker.forward_context import ForwardContext
from services.worker.kv_pool import KVPool

logger = logging.getLogger(__name__)


class AttentionBackend(ABC):
    """Paged attention over the slot-indexed KV pool.

    ``prepare`` runs once per forward and stores whatever per-step metadata the backend needs in
    ``ctx.attn_metadata``; ``forward`` runs once per layer: it stores the new tokens' k/v at
    ``ctx.out_cache_loc`` and returns causal attention of each request's new tokens over its
    prefix plus new tokens.
    """

    name: str = ""

    @staticmethod
    def unavailable_reason(device: torch.device) -> str | None:
        """Why this backend cannot run on ``device`` (None: it can)."""
        return None

    def __init__(self, kv_pool: KVPool, num_heads: int, head_dim: int) -> None:
        self.kv_pool, self.num_heads, self.head_dim = kv_pool, num_heads, head_dim

    @abstractmethod
    def prepare(self, ctx: ForwardContext) -> None: ...

    @abstractmethod
    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer_id: int,
        scale: float,
        ctx: ForwardContext,
    ) -> torch.Tensor:
        """``q [T, H, D]``, ``k``/``v [T, Hkv, D]`` -> ``[T, H, D]``."""
