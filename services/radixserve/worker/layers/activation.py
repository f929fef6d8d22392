"""SwiGLU activation on a fused gate/up projection."""

from __future__ import annotations

import logging

import torch
from torch import nn

from radixserve.worker.layers.ops import Ops, get_ops

logger = logging.getLogger(__name__)


class SiluAndMul(nn.Module):
    """``silu(x[..., :d]) * x[..., d:]`` for ``x`` of last size ``2 * d``."""

    def __init__(self, ops: Ops | None = None) -> None:
        super().__init__()
        self.ops = ops or get_ops()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.silu_and_mul(x)
