"""``RunnerConfig`` and the choices derived from it (device, dtype, backend, KV pool size)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from services.worker.attention import AttentionBackend, get_backend_class
from services.worker.kv_pool import KVPool
from services.worker.model_config import ModelConfig

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_CPU_DEFAULT_SLOTS = 16384
_CPU_KV_BYTES = 2 << 30  # most KV memory a default CPU pool takes


@dataclass(frozen=True)
class RunnerConfig:
    """How to build a :class:`~services.worker.engine.ModelRunner`.

    ``model``/``load_format`` go through ``resolve_model``; ``dtype`` ``auto`` is float32 on CPU
    and bfloat16 on CUDA; ``attention_backend`` None reads ``RADIXSERVE_ATTENTION_BACKEND``
    (default ``torch`` on CPU, ``triton`` on GPU); ``num_slots`` None sizes the KV pool from
    ``mem_fraction_static`` of GPU memory (on CPU: 16384 slots, capped at 2 GiB of KV);
    ``max_context_len`` None is the model's context length.
    """

    model: str | None = None
    load_format: str = "auto"
    dtype: str = "auto"
    device: str = "auto"
    attention_backend: str | None = None
    num_slots: int | None = None
    max_rows: int = 256
    max_context_len: int | None = None
    seed: int = 0
    mem_fraction_static: float = 0.85
    cuda_graph_max_bs: int = 256  # decode CUDA graphs up to this batch (CUDA + Triton); 0: off


def resolve_device_dtype(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dtype == "auto":
        return dev, torch.bfloat16 if dev.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be auto or one of {', '.join(_DTYPES)}, got {dtype!r}")
    return dev, _DTYPES[dtype]


def pick_backend(name: str | None, device: torch.device) -> type[AttentionBackend]:
    name = (
        name
        or os.environ.get("RADIXSERVE_ATTENTION_BACKEND")
        or ("triton" if device.type == "cuda" else "torch")
    )
    try:
        cls = get_backend_class(name)
        reason = cls.unavailable_reason(device)
    except ImportError as e:
        reason = str(e)
    if reason is None:
        logger.info("attention backend: %s", name)
        return cls
    logger.warning("attention backend %r unavailable (%s); using torch", name, reason)
    return get_backend_class("torch")


def size_pool(
    cfg: RunnerConfig,
    c: ModelConfig,
    dtype: torch.dtype,
    device: torch.device,
    max_context_len: int,
) -> int:
    per_slot = KVPool.bytes_per_slot(c.num_layers, c.num_kv_heads, c.head_dim, dtype)
    useful = cfg.max_rows * max_context_len + 1  # more slots than this can never be used
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        free, total = torch.cuda.mem_get_info(device)
        budget = free - total * (1.0 - cfg.mem_fraction_static)
        slots = int(budget // per_slot)
        if slots < 2:
            raise RuntimeError(
                f"no GPU memory left for the KV cache ({free / 2**30:.1f} GiB free of "
                f"{total / 2**30:.1f}); raise mem_fraction_static or use a smaller model"
            )
    else:
        slots = min(_CPU_DEFAULT_SLOTS, _CPU_KV_BYTES // per_slot)
    return max(2, min(slots, useful))
