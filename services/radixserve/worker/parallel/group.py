"""The tensor-parallel group: the only place that calls ``torch.distributed``.

Layers and the runner hold a :class:`TPGroup` and call its collectives; at ``size == 1`` there is
no process group at all and the layers skip the calls (they keep ``group = None``), so TP=1 costs
nothing. The backend follows the device: NCCL for CUDA, gloo for CPU. Python objects (one step per
forward) travel over a separate gloo group on the host, so the step broadcast never touches the
GPU stream, and that group waits without a deadline: followers sit in it while the server idles.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

# A collective whose peer is gone must fail, not hang: a step never waits this long on purpose.
DEFAULT_TIMEOUT_S = 120.0
_IDLE_TIMEOUT = datetime.timedelta(days=365)  # the step channel: followers wait for work


# torch >= 2.11 renamed all_gather_into_tensor (a flat output: the ranks' inputs stacked on dim 0).
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


class TPGroup:
    """Rank ``rank`` of ``size`` ranks of one tensor-parallel group on ``device``."""

    def __init__(self, rank: int = 0, size: int = 1, device: torch.device | str = "cpu") -> None:
        self.rank, self.size, self.device = rank, size, torch.device(device)
        self.backend = "nccl" if self.device.type == "cuda" else "gloo"
        self._group: Any = None  # the device group (None: the default group)
        self._cpu_group: Any = None  # objects and host-side integers
        # NOTE: the one hook for a faster small-message all-reduce (e.g. one-shot over NVLink):
        # a callable ``(tensor) -> tensor | None``; None from it falls back to the backend.
        self.fast_all_reduce: Callable[[torch.Tensor], torch.Tensor | None] | None = None
        self.allreduce_calls = 0
        self.allreduce_bytes = 0
        self.allreduce_seconds = 0.0  # host time; on CUDA only the launch (no sync here)

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    @classmethod
    def init(
        cls,
        rank: int,
        size: int,
        device: torch.device | str,
        init_method: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> TPGroup:
        """Join (or, at size 1, skip) the process group rendezvousing at ``init_method``."""
        group = cls(rank, size, device)
        if size == 1:
            return group
        cuda = group.device.type == "cuda"
        if cuda:
            torch.cuda.set_device(group.device)
        dist.init_process_group(
            group.backend,
            init_method=init_method,
            rank=rank,
            world_size=size,
            timeout=datetime.timedelta(seconds=timeout_s),
            # NOTE: creates the NCCL communicator now: it cannot be created inside graph capture
            device_id=group.device if cuda else None,
        )
        group._cpu_group = dist.new_group(backend="gloo", timeout=_IDLE_TIMEOUT)
        logger.info(
            "joined TP group",
            extra={"kv": {"rank": rank, "size": size, "backend": group.backend}},
        )
        return group

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of ``x`` over the ranks (in place when the backend allows; use the result).

        Safe inside CUDA graph capture: NCCL enqueues on the current stream, no host sync.
        """
        if self.size == 1:
            return x
        start = time.perf_counter()
        out = self.fast_all_reduce(x) if self.fast_all_reduce is not None else None
        if out is None:
            dist.all_reduce(x, group=self._group)
            out = x
        self.allreduce_calls += 1
        self.allreduce_bytes += x.numel() * x.element_size()
        self.allreduce_seconds += time.perf_counter() - start
        return out

    def enable_fast_all_reduce(self, dtype: torch.dtype) -> None:
        """Every rank together, before graph capture: small all-reduces of ``dtype`` take the
        one-shot path over NVLink peer buffers (``symm_mem.py``); the rest stays on NCCL."""
        if self.size == 1 or self.device.type != "cuda":
            return
        from radixserve.worker.parallel.symm_mem import SymmMemAllReduce

        name = (self._group or dist.group.WORLD).group_name
        hook = SymmMemAllReduce.create(name, self.device, dtype)
        # NOTE: all ranks take the same path, or an all-reduce would pair one-shot with NCCL.
        if self.min_int(1 if hook is not None else 0):
            self.fast_all_reduce = hook

    def all_gather(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """The ranks' ``x`` concatenated along ``dim`` (same shape on every rank)."""
        if self.size == 1:
            return x
        x = x.contiguous()
        out = torch.empty((self.size * x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)
        _all_gather_single(out, x, group=self._group)
        return torch.cat(out.view(self.size, *x.shape).unbind(0), dim=dim)

    def gather_to_leader(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor | None:
        """The ranks' ``x`` concatenated along ``dim`` on rank 0; None on the others.

        NCCL uses an all-gather (capturable in CUDA graphs, and the followers ignore it); gloo
        gathers to rank 0 only.
        """
        if self.size == 1:
            return x
        if self.backend == "nccl":
            return self.all_gather(x, dim)
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(self.size)] if self.rank == 0 else None
        dist.gather(x, parts, dst=0, group=self._group)
        return torch.cat(parts, dim=dim) if parts is not None else None

    def broadcast(self, x: torch.Tensor, src: int = 0) -> torch.Tensor:
        if self.size > 1:
            dist.broadcast(x, src, group=self._group)
        return x

    def broadcast_object(self, obj: Any = None, src: int = 0) -> Any:
        """``obj`` of rank ``src`` on every rank (pickled, over the host group)."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src, group=self._cpu_group)
        return box[0]

    def min_int(self, value: int) -> int:
        """The smallest ``value`` over the ranks (e.g. the KV slots every rank can hold)."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MIN, group=self._cpu_group)
        return int(t.item())

    def destroy(self) -> None:
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()
