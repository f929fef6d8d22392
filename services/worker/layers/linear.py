"""Linear layers whose weight loaders are where tensor-parallel sharding lives.

Every parameter carries a ``weight_loader(param, loaded, shard_id=None)`` that copies its part of a
checkpoint tensor into it; the model's load code never slices tensors itself.

* :class:`ColumnParallelLinear` splits the output features: rank ``r`` of ``tp_size`` holds rows
  ``[r * out / tp, (r + 1) * out / tp)`` of the weight and produces that slice of the output.
  :class:`MergedColumnParallelLinear` (fused gate/up) and :class:`QKVParallelLinear` (fused q/k/v)
  are column-parallel layers made of several checkpoint tensors, each sharded on its own.
* :class:`RowParallelLinear` splits the input features: each rank multiplies its slice of the
  input by its columns of the weight; the partial outputs are summed across ranks (an all-reduce).

Today ``tp_rank = 0`` and ``tp_size = 1``: every loader copies the whole tensor and
``all_reduce`` is not needed. With tensor parallelism, the worker passes the rank and size and sets
``RowParallelLinear.all_reduce`` to its communicator; no model file changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


def _param(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape), requires_grad=False)


class LinearBase(nn.Module):
    def __init__(
        self, input_size: int, output_size: int, bias: bool, tp_rank: int = 0, tp_size: int = 1
    ) -> None:
        super().__init__()
        self.tp_rank, self.tp_size = tp_rank, tp_size
        self.input_size, self.output_size = input_size, output_size
        self.weight = _param(output_size, input_size)
        self.weight.weight_loader = self.weight_loader
        self.bias = _param(output_size) if bias else None
        if self.bias is not None:
            self.bias.weight_loader = self.weight_loader

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
        _copy(param.data, loaded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def _copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    if dst.shape != src.shape:
        raise ValueError(
            f"weight shape mismatch: expected {tuple(dst.shape)}, got {tuple(src.shape)}"
        )
    dst.copy_(src)


def _shard(loaded: torch.Tensor, dim: int, rank: int, size: int) -> torch.Tensor:
    if size == 1:
        return loaded
    part = loaded.shape[dim] // size
    return loaded.narrow(dim, rank * part, part)


class ReplicatedLinear(LinearBase):
    """Every rank holds the whole weight."""


class ColumnParallelLinear(LinearBase):
    def __init__(
        self, input_size: int, output_size: int, bias: bool = False, tp_rank: int = 0,
        tp_size: int = 1,
    ) -> None:  # fmt: skip
        super().__init__(input_size, output_size // tp_size, bias, tp_rank, tp_size)

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
        _copy(param.data, _shard(loaded, 0, self.tp_rank, self.tp_size))


class MergedColumnParallelLinear(ColumnParallelLinear):
    """Several column-parallel outputs in one matmul (gate and up); ``shard_id``: the index."""

    def __init__(
        self, input_size: int, output_sizes: list[int], bias: bool = False, tp_rank: int = 0,
        tp_size: int = 1,
    ) -> None:  # fmt: skip
        self.output_sizes = list(output_sizes)
        super().__init__(input_size, sum(output_sizes), bias, tp_rank, tp_size)

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
        if shard_id is None:
            raise ValueError("a merged linear needs the shard index of each checkpoint tensor")
        offset = sum(self.output_sizes[:shard_id]) // self.tp_size
        size = self.output_sizes[shard_id] // self.tp_size
        _copy(param.data.narrow(0, offset, size), _shard(loaded, 0, self.tp_rank, self.tp_size))


class QKVParallelLinear(ColumnParallelLinear):
    """Fused q/k/v projection; ``shard_id`` is ``"q"``, ``"k"`` or ``"v"``; heads split by rank."""

    def __init__(
        self, hidden_size: int, head_dim: int, num_heads: int, num_kv_heads: int,
        bias: bool = False, tp_rank: int = 0, tp_size: int = 1,
    ) -> None:  # fmt: skip
        self.head_dim = head_dim
        # NOTE: with tp_size > num_kv_heads the kv heads would be replicated; not supported yet.
        self.num_heads = num_heads // tp_size
        self.num_kv_heads = max(1, num_kv_heads // tp_size)
        total = (num_heads + 2 * num_kv_heads) * head_dim
        super().__init__(hidden_size, total, bias, tp_rank, tp_size)

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
        offsets = {"q": (0, self.q_size), "k": (self.q_size, self.kv_size)}
        offsets["v"] = (self.q_size + self.kv_size, self.kv_size)
        if shard_id not in offsets:
            raise ValueError(f"qkv shard_id must be q, k or v, got {shard_id!r}")
        offset, size = offsets[shard_id]
        _copy(param.data.narrow(0, offset, size), _shard(loaded, 0, self.tp_rank, self.tp_size))


class RowParallelLinear(LinearBase):
    """Input features split across ranks; partial outputs summed by ``all_reduce`` when set."""

    def __init__(
        self, input_size: int, output_size: int, bias: bool = False, tp_rank: int = 0,
        tp_size: int = 1,
    ) -> None:  # fmt: skip
        super().__init__(input_size // tp_size, output_size, bias, tp_rank, tp_size)
        self.all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
        if param.dim() == 1:  # bias: added once, after the reduction
            _copy(param.data, loaded)
            return
        _copy(param.data, _shard(loaded, 1, self.tp_rank, self.tp_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # NOTE: the bias must be added after the all-reduce, or it would be counted tp_size times.
        y = F.linear(x, self.weight)
        if self.all_reduce is not None and self.tp_size > 1:
            y = self.all_reduce(y)
        return y if self.bias is None else y + self.bias
