"""Live roofline: how close each forward comes to the device's memory-bandwidth and matmul ceilings.

At start-up :func:`measure_ceilings` times a large copy (bytes read + written per second) and a
square matmul in the model's dtype (FLOP/s), a fraction of a second on a GPU. Per step,
:class:`ModelCost` counts what the forward must move and compute at the least:

* bytes: the weights once (body + LM head), the KV cache each request attends over, the KV
  written for the new tokens, and each linear layer's input and output activations;
* FLOPs: 2 x body parameters per token, 2 x vocab x hidden per sampled row (the LM head runs on
  those only), and attention's 4 x heads x head_dim per (query, key) pair, causal.

Achieved fraction = (bytes or FLOPs) / measured step time / ceiling. A decode step is bound by
bandwidth (its compute fraction is low by nature), a large prefill by compute. On a CPU the same
copy and matmul measure the CPU's own ceilings, so the fractions mean the same thing there.
torch is imported lazily: the worker's server imports this module before torch is needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ceilings:
    bandwidth: float  # bytes/s, read + write of a device-to-device copy
    flops: float  # FLOP/s of a square matmul in the model's dtype


def _best_seconds(fn: Callable[[], Any], device: Any, reps: int) -> float:
    import torch

    fn()  # warm-up (allocator, kernel selection)
    best = float("inf")
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
    return best


def measure_ceilings(device: Any, dtype: Any) -> Ceilings:
    """Times one copy and one matmul on ``device`` (best of a few runs)."""
    import torch

    gpu = device.type == "cuda"
    nbytes = (256 if gpu else 32) << 20
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    bandwidth = 2 * nbytes / _best_seconds(lambda: dst.copy_(src), device, 5)
    m = 8192 if gpu else 384
    a = torch.randn(m, m, device=device).to(dtype)
    b = torch.randn(m, m, device=device).to(dtype)
    flops = 2 * m**3 / _best_seconds(lambda: torch.mm(a, b), device, 5)
    src = dst = a = b = None  # noqa: F841 - free before handing the memory back
    if gpu:
        torch.cuda.empty_cache()  # the scratch buffers go back; "other" memory stays honest
    ceilings = Ceilings(bandwidth, flops)
    logger.info("roofline ceilings: %.1f GB/s, %.1f TFLOP/s", bandwidth / 1e9, flops / 1e12)
    return ceilings


@dataclass(frozen=True)
class ModelCost:
    body_params: int  # matmul weights outside the embedding and the LM head
    weight_bytes: int  # what one forward reads of the weights
    act_bytes_per_token: int  # inputs + outputs of every body matmul, per token
    head_flops_per_row: int  # LM head
    kv_bytes_per_token: int  # K + V of one position, all layers
    attn_flops_per_pair: int  # one (query, key) pair, all layers

    @classmethod
    def of(cls, model: Any, info: Any) -> ModelCost:
        body = act = head_bytes = itemsize = 0
        for p in model.parameters():
            itemsize = p.element_size()
            if p.dim() != 2:
                continue
            if p.shape[0] == info.vocab_size:  # embedding table or LM head
                head_bytes = p.numel() * itemsize
                continue
            body += p.numel()
            act += (p.shape[0] + p.shape[1]) * itemsize
        kv = 2 * info.num_layers * info.num_kv_heads * info.head_dim * itemsize
        return cls(
            body_params=body,
            weight_bytes=body * itemsize + head_bytes,
            act_bytes_per_token=act,
            head_flops_per_row=2 * info.vocab_size * info.hidden_size,
            kv_bytes_per_token=kv,
            attn_flops_per_pair=4 * info.num_layers * info.num_heads * info.head_dim,
        )

    def step(self, reqs: list[Any], seq_len: Callable[[Any], int]) -> tuple[float, float]:
        """(bytes, FLOPs) of one step; ``seq_len(req)`` is the row's length after the step."""
        tokens = rows = kv_read = pairs = 0
        for r in reqs:
            n = len(r.new_slots)
            end = seq_len(r)
            tokens += n
            rows += 1 if r.sample else 0
            kv_read += end
            pairs += n * (end - n) + n * (n + 1) // 2  # causal: query i sees start + i keys
        nbytes = (
            self.weight_bytes
            + (kv_read + tokens) * self.kv_bytes_per_token
            + tokens * self.act_bytes_per_token
        )
        flops = (
            2 * self.body_params * tokens
            + self.head_flops_per_row * rows
            + self.attn_flops_per_pair * pairs
        )
        return float(nbytes), float(flops)
