"""SwiGLU activation on a fused gate/up projection."""

from __future__ import annotations

import logging

import torch
from torch import nn

from services.worker.layers import ops

logger = logging.getLogger(__name__)


class SiluAndMul(nn.Module):
    """``silu(x[..., :d]) * x[..., d:]`` for ``x`` of last size ``2 * d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.silu_and_mul(x)
