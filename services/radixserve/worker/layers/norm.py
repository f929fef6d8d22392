"""RMSNorm, with the residual add fused in when a residual is passed."""

from __future__ import annotations

import logging

import torch
from torch import nn

from radixserve.worker.layers.ops import Ops, get_ops

logger = logging.getLogger(__name__)


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6, ops: Ops | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.ops = ops or get_ops()
        self.weight = nn.Parameter(torch.empty(hidden_size), requires_grad=False)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``norm(x)``; with ``residual``: ``(norm(x + residual), x + residual)``."""
        if residual is None:
            return self.ops.rms_norm(x, self.weight, self.eps)
        return self.ops.fused_add_rms_norm(x, residual, self.weight, self.eps)
