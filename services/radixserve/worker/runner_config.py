"""``RunnerConfig`` and the choices derived from it (device, dtype, backend, ops, KV pool)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from radixserve.worker.attention import AttentionBackend, get_backend_class, known_backends
from radixserve.worker.kv_pool import KVPool
from radixserve.worker.layers.ops import known_ops
from radixserve.worker.model_config import ModelConfig

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_DT = ", ".join(_DTYPES)
LOAD_FORMATS = ("auto", "gguf", "hf", "dummy")
_CPU_DEFAULT_SLOTS = 16384
_CPU_KV_BYTES = 2 << 30  # most KV memory a default CPU pool takes


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class RunnerConfig:
    """How to build a :class:`~services.worker.engine.ModelRunner`; checked when constructed.

    The worker service's config embeds it (``WorkerConfig`` adds only the serving settings), so
    every field is a flag ``--field-name`` and a ``RADIXSERVE_FIELD_NAME`` variable. None (or an
    empty value) picks the default that the help text names.
    """

    model: str | None = field(
        default=None, metadata=_help("GGUF file, HF directory or config.json; empty = SmolLM2")
    )
    load_format: str = field(default="auto", metadata=_help(f"one of {', '.join(LOAD_FORMATS)}"))
    dtype: str = field(default="auto", metadata=_help("auto (bf16 on GPU, fp32 on CPU), " + _DT))
    device: str = field(default="auto", metadata=_help("auto, cpu, cuda or cuda:N"))
    attention_backend: str | None = field(
        default=None, metadata=_help("torch or triton; empty = triton on GPU, torch on CPU")
    )
    ops: str | None = field(
        default=None,
        metadata=_help("elementwise ops, torch or triton; empty = as the attention backend"),
    )
    num_slots: int | None = field(
        default=None, metadata=_help("KV slots; empty or 0 = size from mem_fraction_static")
    )
    max_rows: int = field(default=256, metadata=_help("most requests alive at once"))
    max_context_len: int | None = field(
        default=None, metadata=_help("tokens per request; empty or 0 = the model's")
    )
    seed: int = field(default=0, metadata=_help("seed for dummy weights and sampling"))
    mem_fraction_static: float = field(
        default=0.85,
        metadata=_help("fraction of GPU memory for weights + KV cache (CPU: 16384 slots, 2 GiB)"),
    )
    cuda_graph_max_bs: int = field(
        default=256, metadata=_help("decode CUDA graphs up to this batch size; 0 disables")
    )
    custom_all_reduce: bool = field(
        default=True,
        metadata=_help("TP on CUDA: one-shot all-reduce over NVLink peer buffers below 8 MB"),
    )
    grammar_overlap: bool = field(
        default=True,
        metadata=_help(
            "structured output: advance the matchers and fill the next step's token masks on a "
            "thread while the next forward runs (false: between steps)"
        ),
    )

    def __post_init__(self) -> None:
        # NOTE: flags and env spell "use the default" as empty or 0; store it once, as None.
        for name in ("model", "attention_backend", "ops", "num_slots", "max_context_len"):
            if getattr(self, name) in ("", 0):
                object.__setattr__(self, name, None)
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every invalid setting, each naming its field (empty when the config is valid)."""
        out = [
            _choice("load_format", self.load_format, LOAD_FORMATS),
            _choice("dtype", self.dtype, ("auto", *_DTYPES)),
            _choice("attention_backend", self.attention_backend, known_backends()),
            _choice("ops", self.ops, known_ops()),
        ]
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            out.append(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.num_slots is not None and self.num_slots < 2:
            out.append(f"num_slots must be >= 2 (slot 0 is padding), got {self.num_slots}")
        if self.max_rows < 1:
            out.append(f"max_rows must be >= 1, got {self.max_rows}")
        if self.max_context_len is not None and self.max_context_len < 1:
            out.append(f"max_context_len must be >= 1, got {self.max_context_len}")
        if not 0.0 < self.mem_fraction_static <= 1.0:
            out.append(f"mem_fraction_static must be in (0, 1], got {self.mem_fraction_static}")
        if self.cuda_graph_max_bs < 0:
            out.append(f"cuda_graph_max_bs must be >= 0, got {self.cuda_graph_max_bs}")
        return [p for p in out if p]


def _choice(name: str, value: str | None, known: Sequence[str]) -> str:
    if value is None or value in known:
        return ""
    return f"unknown {name} {value!r}; known: {', '.join(known)}"


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


def pick_ops(name: str | None, backend: str, device: torch.device) -> str:
    """The ops implementation: ``name``, else the attention backend's; torch when Triton
    cannot run on ``device``."""
    name = name or (backend if backend in known_ops() else "torch")
    if name == "triton":
        try:
            reason = get_backend_class("triton").unavailable_reason(device)
        except ImportError as e:
            reason = str(e)
        if reason is not None:
            logger.warning("triton ops unavailable (%s); using torch", reason)
            return "torch"
    logger.info("model ops: %s", name)
    return name


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
