"""Device memory the worker keeps across steps: the paged KV pool and the req->token table.

Slot 0 of the KV pool is reserved for padding: the scheduler never hands it out, so kernels may
write padded tokens there. Row ``r`` of the req->token table maps token position -> KV slot for
the request that owns row ``r``; the scheduler owns the slot numbers, the worker only copies them.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


class KVPool:
    """One K and one V buffer per layer, each ``[num_slots, num_kv_heads, head_dim]``."""

    def __init__(
        self,
        num_layers: int,
        num_slots: int,
        num_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        if num_slots < 2:
            raise ValueError(f"num_slots must be >= 2 (slot 0 is padding), got {num_slots}")
        self.num_slots, self.num_layers = num_slots, num_layers
        self.num_kv_heads, self.head_dim, self.dtype = num_kv_heads, head_dim, dtype
        shape = (num_slots, num_kv_heads, head_dim)
        self.k_bufs = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v_bufs = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        logger.info(
            "KV pool: %d slots x %d layers, %.1f MiB", num_slots, num_layers, self.nbytes / 2**20
        )

    @staticmethod
    def bytes_per_slot(
        num_layers: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype
    ) -> int:
        itemsize = torch.empty((), dtype=dtype).element_size()
        return 2 * num_layers * num_kv_heads * head_dim * itemsize

    @property
    def nbytes(self) -> int:
        return self.num_slots * self.bytes_per_slot(
            self.num_layers, self.num_kv_heads, self.head_dim, self.dtype
        )

    def layer(self, layer_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k_bufs[layer_id], self.v_bufs[layer_id]


class ReqToTokenTable:
    """``table[row, pos]`` = KV slot of token ``pos`` of the request in ``row`` (int32, device)."""

    def __init__(self, max_rows: int, max_context_len: int, device: torch.device | str) -> None:
        self.max_rows, self.max_context_len = max_rows, max_context_len
        self.table = torch.zeros((max_rows, max_context_len), dtype=torch.int32, device=device)

    def write(self, rows: torch.Tensor, cols: torch.Tensor, slots: torch.Tensor) -> None:
        """Scatter ``table[rows[i], cols[i]] = slots[i]`` in one indexed write."""
        self.table[rows, cols] = slots.to(torch.int32)
