"""Small-message all-reduce over NVLink peer buffers (torch symmetric memory, no multicast).

A batch-1 decode step of Llama-3-8B runs 64 all-reduces of 8 KB; NCCL needs ~18 µs for each even
inside a CUDA graph on 2 x H200, most of it protocol latency. Here every rank owns one buffer
mapped into all peers (``symm_mem.empty`` + ``rendezvous``, CUDA IPC under the hood): a step copies
its input into its buffer and ``one_shot_all_reduce_out`` reads every peer's buffer over NVLink and
sums (~7.4 µs at 8 KB in a graph, bench/results/allreduce-h200x2.json). Medium messages take the
two-shot form (reduce-scatter + all-gather over the same buffers); larger ones fall back to NCCL.
The kernels synchronize through the buffers' signal pads, so this needs no host sync and captures
into the decode CUDA graphs. Multicast stays off (``TORCH_SYMM_MEM_DISABLE_MULTICAST=1``): it can
take a shared host's GPUs out of service.
"""

from __future__ import annotations

import logging
import os

import torch

logger = logging.getLogger(__name__)

ONE_SHOT_MAX_BYTES = 512 * 1024  # measured crossover with two-shot on 2 x H200
BUFFER_BYTES = 8 * 1024 * 1024  # above this NCCL's bandwidth wins (32 MB: 127 vs 151 µs)


class SymmMemAllReduce:
    """A ``TPGroup.fast_all_reduce`` hook: returns the reduced tensor, or None to let NCCL run."""

    def __init__(
        self, group_name: str, device: torch.device, dtype: torch.dtype, max_bytes: int
    ) -> None:
        import torch.distributed._symmetric_memory as symm_mem

        self.group_name, self.dtype = group_name, dtype
        itemsize = torch.finfo(dtype).bits // 8
        self.buffer = symm_mem.empty(max_bytes // itemsize, dtype=dtype, device=device)
        symm_mem.rendezvous(self.buffer, group_name)

    @classmethod
    def create(
        cls,
        group_name: str,
        device: torch.device,
        dtype: torch.dtype,
        max_bytes: int = BUFFER_BYTES,
    ) -> SymmMemAllReduce | None:
        """The hook, or None (with the reason logged) where peer buffers cannot be set up."""
        if device.type != "cuda":
            return None
        os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
        try:
            hook = cls(group_name, device, dtype, max_bytes)
        except Exception as exc:  # noqa: BLE001 - no P2P, old torch: NCCL still works
            logger.warning("one-shot all-reduce unavailable, using NCCL: %r", exc)
            return None
        logger.info("one-shot all-reduce over peer buffers", extra={"kv": {"bytes": max_bytes}})
        return hook

    def __call__(self, x: torch.Tensor) -> torch.Tensor | None:
        nbytes = x.numel() * x.element_size()
        if x.dtype != self.dtype or not x.is_contiguous() or x.numel() > self.buffer.numel():
            return None
        view = self.buffer[: x.numel()]
        view.copy_(x.view(-1))
        if nbytes <= ONE_SHOT_MAX_BYTES:
            torch.ops.symm_mem.one_shot_all_reduce_out(view, "sum", self.group_name, out=x.view(-1))
        else:
            torch.ops.symm_mem.two_shot_all_reduce_(view, "sum", self.group_name)
            x.view(-1).copy_(view)
        return x
