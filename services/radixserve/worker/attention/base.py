"""The attention backend interface."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import torch

from radixserve.worker.forward_context import ForwardContext
from radixserve.worker.kv_pool import KVPool

logger = logging.getLogger(__name__)


class AttentionBackend(ABC):
    """Paged attention over the slot-indexed KV pool.

    ``prepare`` runs once per eager forward and stores whatever per-step metadata the backend
    needs in ``ctx.attn_metadata``; ``forward`` runs once per layer: it stores the new tokens' k/v
    at ``ctx.out_cache_loc`` and returns causal attention of each request's new tokens over its
    prefix plus new tokens.

    Decode CUDA graphs (``services.worker.cuda_graph``) use two more hooks, which every backend
    implements (a backend that cannot run in a graph refuses them and says
    ``supports_cuda_graphs = False``): ``init_cuda_graph_state`` once, before any capture, and
    ``prepare_captured_decode`` in place of ``prepare`` inside the captured forward.

    ``windows`` are the model's distinct sliding windows (``ModelConfig.sliding_windows``): a
    backend builds any per-window metadata once per step per window, never per layer.
    """

    name: str = ""
    supports_cuda_graphs: bool = False

    @staticmethod
    def unavailable_reason(device: torch.device) -> str | None:
        """Why this backend cannot run on ``device`` (None: it can)."""
        return None

    def __init__(
        self, kv_pool: KVPool, num_heads: int, head_dim: int, windows: tuple[int, ...] = ()
    ) -> None:
        self.kv_pool, self.num_heads, self.head_dim = kv_pool, num_heads, head_dim
        self.windows = tuple(sorted(set(windows) - {0}))

    @abstractmethod
    def prepare(self, ctx: ForwardContext) -> None: ...

    @abstractmethod
    def init_cuda_graph_state(self, max_bs: int, max_context_len: int) -> None:
        """Allocates the static metadata buffers of decode graphs up to batch ``max_bs``."""

    @abstractmethod
    def prepare_captured_decode(self, ctx: ForwardContext) -> None:
        """Decode metadata for a graph being captured, so every replay recomputes it.

        ``ctx`` holds static device buffers (``kv_indptr`` already filled); the hook may read only
        those, write only the buffers of ``init_cuda_graph_state``, and never sync the host.
        """

    @abstractmethod
    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer_id: int,
        scale: float,
        ctx: ForwardContext,
        window: int = 0,
        logit_cap: float = 0.0,
    ) -> torch.Tensor:
        """``q [T, H, D]``, ``k``/``v [T, Hkv, D]`` -> ``[T, H, D]``.

        ``scores = scale * q.k``, soft-capped to ``logit_cap * tanh(scores / logit_cap)`` when
        ``logit_cap > 0``; with ``window`` W > 0 (one of ``self.windows``) a query at position p
        sees only keys p - W < k <= p (transformers' ``sliding_window_overlay``).
        """
