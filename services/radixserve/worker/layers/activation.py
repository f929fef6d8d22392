"""Gated activations on a fused gate/up projection: SwiGLU and GeGLU."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
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


class GeluAndMul(nn.Module):
    """``gelu(x[..., :d]) * x[..., d:]``; ``approximate="tanh"`` is ``gelu_pytorch_tanh``."""

    def __init__(self, approximate: str = "tanh") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = x.chunk(2, dim=-1)
        return F.gelu(gate, approximate=self.approximate) * up


def gated_activation(hidden_act: str, ops: Ops | None = None) -> nn.Module:
    """The gated activation for an HF ``hidden_act`` (checked by ``ModelConfig``)."""
    if hidden_act == "silu":
        return SiluAndMul(ops)
    if hidden_act == "gelu_pytorch_tanh":
        return GeluAndMul("tanh")
    if hidden_act == "gelu":
        return GeluAndMul("none")
    raise ValueError(f"unsupported hidden_act {hidden_act!r}; known: silu, gelu_pytorch_tanh, gelu")
