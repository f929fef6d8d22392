"""Small helpers shared by the kernel launchers (no kernels live here)."""

from __future__ import annotations

import functools
import logging

import torch
import triton

logger = logging.getLogger(__name__)

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def next_pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def check(cond: bool, msg: str) -> None:
    """Raise ValueError with `msg` when `cond` is false (launcher argument checks)."""
    if not cond:
        raise ValueError(msg)


def check_float(name: str, t: torch.Tensor) -> None:
    check(t.dtype in FLOAT_DTYPES, f"{name} must be fp16, bf16 or fp32, got {t.dtype}")


def check_int(name: str, t: torch.Tensor) -> None:
    check(t.dtype in (torch.int32, torch.int64), f"{name} must be int32 or int64, got {t.dtype}")


def check_last_contiguous(name: str, t: torch.Tensor) -> None:
    check(t.stride(-1) == 1 or t.shape[-1] == 1, f"{name} must be contiguous in its last dim")


@functools.lru_cache(maxsize=8)
def num_sms(device_index: int) -> int:
    """Multiprocessor count of a CUDA device (132 on an H100 SXM)."""
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def device_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 8  # CPU interpreter: keep grids small, the value only shapes the work split
    return num_sms(device.index if device.index is not None else torch.cuda.current_device())
