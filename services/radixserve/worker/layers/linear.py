"""Linear layers whose weight loaders are where tensor-parallel sharding lives.

Every parameter carries a ``weight_loader(param, loaded, shard_id=None)`` that copies its part of a
checkpoint tensor into it; the model's load code never slices tensors itself. Each parameter also
carries ``full_shape`` (its unsharded shape) and ``full_loader(param, full)`` that loads it from an
unsharded, already fused tensor (random ``dummy`` weights are drawn that way, so every TP size
sees the same model).

* :class:`ColumnParallelLinear` splits the output features: rank ``r`` of ``tp_size`` holds rows
  ``[r * out / tp, (r + 1) * out / tp)`` of the weight and produces that slice of the output.
  :class:`MergedColumnParallelLinear` (fused gate/up) and :class:`QKVParallelLinear` (fused q/k/v)
  are column-parallel layers made of several checkpoint tensors, each sharded on its own; KV heads
  are replicated when ``tp_size`` exceeds their number.
* :class:`RowParallelLinear` splits the input features: each rank multiplies its slice of the
  input by its columns of the weight; the partial outputs are summed across ranks (an all-reduce).

A layer gets the rank and size from its ``group`` (a :class:`~services.worker.parallel.TPGroup`);
``tp_rank``/``tp_size`` alone shard without communicating (tests emulate ranks that way). At size
1 ``self.group`` is None and no collective is called.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from radixserve.worker.parallel.shapes import kv_head_start, local_heads

if TYPE_CHECKING:
    from radixserve.worker.parallel.group import TPGroup

logger = logging.getLogger(__name__)


# Rows up to which a CPU linear runs as a batched product over row blocks (see :func:`linear`).
CPU_SMALL_ROWS = 64


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``, except on CPU for a few rows (decode batches).

    There the weight's output rows are cut into ``2 * threads`` blocks (a view, no copy) and
    ``block @ x^T`` runs as one ``bmm``: torch's CPU ``x @ weight^T`` ran on one thread at one
    row and 1.3-3x slower at 2..32 rows on a 2-core AVX2 machine, where the batched form uses
    every thread (the [49152, 576] LM head at 1 row 21 -> 10 ms, at 8 rows 45 -> 19 ms; equal
    or better up to 128 rows; bench/REPORT.md, "CPU default").
    """
    rows = x.shape[0] if x.dim() == 2 else 0
    if not x.is_cpu or not 0 < rows <= CPU_SMALL_ROWS or not weight.is_contiguous():
        return F.linear(x, weight, bias)
    n, k = weight.shape
    blocks = 2 * torch.get_num_threads()
    if n % blocks:
        blocks = 1
    xt = x.t().unsqueeze(0).expand(blocks, k, rows)
    y = torch.bmm(weight.view(blocks, n // blocks, k), xt).view(n, rows).t().contiguous()
    return y if bias is None else y + bias


def _param(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape), requires_grad=False)


def _rank_size(group: TPGroup | None, tp_rank: int, tp_size: int) -> tuple[int, int]:
    return (group.rank, group.size) if group is not None else (tp_rank, tp_size)


class LinearBase(nn.Module):
    def __init__(
        self, input_size: int, output_size: int, bias: bool, tp_rank: int = 0, tp_size: int = 1,
        group: TPGroup | None = None, full_in: int | None = None, full_out: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.tp_rank, self.tp_size = _rank_size(group, tp_rank, tp_size)
        self.group = group if group is not None and group.size > 1 else None
        self.input_size, self.output_size = input_size, output_size
        self.weight = self._register(_param(output_size, input_size), (full_out, full_in))
        self.bias = None
        if bias:
            self.bias = self._register(_param(output_size), (full_out,))

    def _register(self, param: nn.Parameter, full: tuple[int | None, ...]) -> nn.Parameter:
        param.weight_loader = self.weight_loader
        param.full_loader = self.full_loader
        shape = zip(full, param.shape, strict=True)
        param.full_shape = tuple(f if f is not None else s for f, s in shape)
        return param

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
        _copy(param.data, loaded)

    def full_loader(self, param: nn.Parameter, full: torch.Tensor) -> None:
        self.weight_loader(param, full)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


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
        tp_size: int = 1, group: TPGroup | None = None,
    ) -> None:  # fmt: skip
        size = _rank_size(group, tp_rank, tp_size)[1]
        super().__init__(
            input_size, output_size // size, bias, tp_rank, tp_size, group, full_out=output_size
        )

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
        _copy(param.data, _shard(loaded, 0, self.tp_rank, self.tp_size))


class MergedColumnParallelLinear(ColumnParallelLinear):
    """Several column-parallel outputs in one matmul (gate and up); ``shard_id``: the index."""

    def __init__(
        self, input_size: int, output_sizes: list[int], bias: bool = False, tp_rank: int = 0,
        tp_size: int = 1, group: TPGroup | None = None,
    ) -> None:  # fmt: skip
        self.output_sizes = list(output_sizes)
        super().__init__(input_size, sum(output_sizes), bias, tp_rank, tp_size, group)

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
        if shard_id is None:
            raise ValueError("a merged linear needs the shard index of each checkpoint tensor")
        offset = sum(self.output_sizes[:shard_id]) // self.tp_size
        size = self.output_sizes[shard_id] // self.tp_size
        _copy(param.data.narrow(0, offset, size), _shard(loaded, 0, self.tp_rank, self.tp_size))

    def full_loader(self, param: nn.Parameter, full: torch.Tensor) -> None:
        for i, part in enumerate(full.split(self.output_sizes, dim=0)):
            self.weight_loader(param, part, i)


class QKVParallelLinear(ColumnParallelLinear):
    """Fused q/k/v projection; ``shard_id`` is ``"q"``, ``"k"`` or ``"v"``; heads split by rank.

    With ``tp_size > num_kv_heads`` each rank keeps the one KV head its query heads share (heads
    are replicated, ``tp_size / num_kv_heads`` ranks per KV head).
    """

    def __init__(
        self, hidden_size: int, head_dim: int, num_heads: int, num_kv_heads: int,
        bias: bool = False, tp_rank: int = 0, tp_size: int = 1, group: TPGroup | None = None,
    ) -> None:  # fmt: skip
        rank, size = _rank_size(group, tp_rank, tp_size)
        self.head_dim = head_dim
        self.total_heads, self.total_kv_heads = num_heads, num_kv_heads
        self.num_heads, self.num_kv_heads = local_heads(num_heads, num_kv_heads, size)
        self.kv_start = kv_head_start(num_kv_heads, rank, size)
        local_out = (self.num_heads + 2 * self.num_kv_heads) * head_dim
        LinearBase.__init__(
            self, hidden_size, local_out, bias, tp_rank, tp_size, group,
            full_out=(num_heads + 2 * num_kv_heads) * head_dim,
        )  # fmt: skip

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
        if self.tp_size == 1:
            part = loaded
        elif shard_id == "q":
            part = _shard(loaded, 0, self.tp_rank, self.tp_size)
        else:  # by head index: a KV head may be shared by several ranks
            part = loaded.narrow(0, self.kv_start * self.head_dim, size)
        _copy(param.data.narrow(0, offset, size), part)

    def full_loader(self, param: nn.Parameter, full: torch.Tensor) -> None:
        q, kv = self.total_heads * self.head_dim, self.total_kv_heads * self.head_dim
        for sid, part in zip("qkv", full.split([q, kv, kv], dim=0), strict=True):
            self.weight_loader(param, part, sid)


class RowParallelLinear(LinearBase):
    """Input features split across ranks; partial outputs summed by the group's all-reduce."""

    def __init__(
        self, input_size: int, output_size: int, bias: bool = False, tp_rank: int = 0,
        tp_size: int = 1, group: TPGroup | None = None,
    ) -> None:  # fmt: skip
        size = _rank_size(group, tp_rank, tp_size)[1]
        super().__init__(
            input_size // size, output_size, bias, tp_rank, tp_size, group, full_in=input_size
        )

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
        if param.dim() == 1:  # bias: added once, after the reduction
            _copy(param.data, loaded)
            return
        _copy(param.data, _shard(loaded, 1, self.tp_rank, self.tp_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # NOTE: the bias must be added after the all-reduce, or it would be counted tp_size times.
        y = linear(x, self.weight)
        if self.group is not None:
            y = self.group.all_reduce(y)
        return y if self.bias is None else y + self.bias
