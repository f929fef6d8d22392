"""Attention on the Triton kernels of ``kernels/`` (decode: split-KV; extend: ragged prefill).

A step whose requests all append one token runs ``decode_attention`` over each request's whole
KV (its new token is stored first). Any other step runs ``extend_attention``: the prefix comes
from the pool through ``kv_indices`` and the new tokens' k/v are passed directly. On CPU the
kernels only run under ``TRITON_INTERPRET=1`` (tests).

Sliding-window layers: a decode step reads, per distinct window W, each request's last
min(L_b, W) slots (``build_kv_indices(..., window=W)``, built once per step per window, so the
decode kernel reads the window only); extend passes ``sliding_window=W`` to the kernel with the
whole prefix (it masks, and skips whole blocks below the window). Soft-cap and scale go to both
kernels as they are.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from radixserve.worker.attention.base import AttentionBackend
from radixserve.worker.forward_context import ForwardContext

logger = logging.getLogger(__name__)


@dataclass
class _Meta:
    decode: bool
    kv_indptr: torch.Tensor  # decode: whole sequences; extend: the cached prefixes only
    kv_indices: torch.Tensor
    max_extend_len: int
    windowed: dict[int, tuple[torch.Tensor, torch.Tensor]]  # decode: W -> (indptr, indices)

    def decode_indices(self, window: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not window:
            return self.kv_indptr, self.kv_indices
        if window not in self.windowed:
            raise ValueError(f"sliding window {window} was not declared to the attention backend")
        return self.windowed[window]


class TritonAttentionBackend(AttentionBackend):
    name = "triton"
    supports_cuda_graphs = True

    @staticmethod
    def unavailable_reason(device: torch.device) -> str | None:
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            return "Triton kernels need a CUDA device (or TRITON_INTERPRET=1)"
        return None

    def __init__(
        self, kv_pool, num_heads: int, head_dim: int, windows: tuple[int, ...] = ()
    ) -> None:
        super().__init__(kv_pool, num_heads, head_dim, windows)
        # NOTE: imported here so TRITON_INTERPRET set by the caller is honoured.
        import radixserve_kernels as kernels

        self._k = kernels
        self._graph_kv_indices: torch.Tensor | None = None  # set by init_cuda_graph_state
        self._graph_window_indices: dict[int, torch.Tensor] = {}

    def prepare(self, ctx: ForwardContext) -> None:
        dev = ctx.req_to_token.device
        decode = ctx.max_extend_len == 1
        if decode:
            lens, total = ctx.seq_lens, sum(ctx.seq_lens_cpu)
            indptr = ctx.kv_indptr
        else:
            lens = ctx.prefix_lens
            total = sum(s - e for s, e in zip(ctx.seq_lens_cpu, ctx.extend_lens_cpu, strict=True))
            indptr = torch.zeros(len(ctx.seq_lens_cpu) + 1, dtype=torch.int32, device=dev)
            indptr[1:] = torch.cumsum(lens, 0)
        # NOTE: sized from CPU lengths so building the indices needs no host sync.
        indices = torch.empty(max(total, 1), dtype=torch.int32, device=dev)
        indptr, indices = self._k.build_kv_indices(
            ctx.req_to_token, ctx.req_rows, lens, indptr, indices
        )
        windowed = {}
        if decode:  # extend masks the window in the kernel over the whole prefix
            longest = max(ctx.seq_lens_cpu, default=0)
            for w in self.windows:
                if longest <= w:  # every request fits its window: the full indices are it
                    windowed[w] = (indptr, indices)
                    continue
                total_w = sum(min(n, w) for n in ctx.seq_lens_cpu)
                buf = torch.empty(max(total_w, 1), dtype=torch.int32, device=dev)
                windowed[w] = self._windowed_indices(ctx, w, buf)
        ctx.attn_metadata = _Meta(decode, indptr, indices, ctx.max_extend_len, windowed)

    def _windowed_indices(
        self, ctx: ForwardContext, window: int, buf: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each request's last ``min(L, window)`` slots into ``buf``; device-only (its indptr is
        a clamp and a cumsum on the device), so it is captured in a graph as well."""
        return self._k.build_kv_indices(
            ctx.req_to_token, ctx.req_rows, ctx.seq_lens,
            self._k.build_kv_indptr(ctx.seq_lens, window), buf, window=window,
        )  # fmt: skip

    def init_cuda_graph_state(self, max_bs: int, max_context_len: int) -> None:
        dev = self.kv_pool.k_bufs[0].device
        self._graph_kv_indices = torch.zeros(
            max_bs * max_context_len, dtype=torch.int32, device=dev
        )
        # NOTE: a window's indices never exceed min(W, context) per request: static size.
        self._graph_window_indices = {
            w: torch.zeros(max_bs * min(w, max_context_len), dtype=torch.int32, device=dev)
            for w in self.windows
        }

    def prepare_captured_decode(self, ctx: ForwardContext) -> None:
        """Builds ``kv_indices`` on device into the static buffer: no host values, no
        allocation. The decode kernel's split count depends only on B and Hkv, so it is static
        too."""
        if self._graph_kv_indices is None:
            raise RuntimeError("init_cuda_graph_state must run before a graph is captured")
        indptr, indices = self._k.build_kv_indices(
            ctx.req_to_token, ctx.req_rows, ctx.seq_lens, ctx.kv_indptr, self._graph_kv_indices
        )
        windowed = {
            w: self._windowed_indices(ctx, w, buf) for w, buf in self._graph_window_indices.items()
        }
        ctx.attn_metadata = _Meta(True, indptr, indices, 1, windowed)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer_id: int,
        scale: float,
        ctx: ForwardContext,
        window: int = 0,
        logit_cap: float = 0.0,
    ) -> torch.Tensor:
        k_buf, v_buf = ctx.kv_pool.layer(layer_id)
        self._k.store_kv(k_buf, v_buf, ctx.out_cache_loc, k, v)
        m: _Meta = ctx.attn_metadata
        if m.decode:
            indptr, indices = m.decode_indices(window)
            return self._k.decode_attention(
                q, k_buf, v_buf, indptr, indices, scale, logit_cap=logit_cap
            )
        if window and window not in self.windows:
            raise ValueError(f"sliding window {window} was not declared to the attention backend")
        out = torch.empty_like(q)
        return self._k.extend_attention(
            q, k, v, out, k_buf, v_buf, ctx.qo_indptr, m.kv_indptr, m.kv_indices, scale,
            logit_cap=logit_cap, max_extend_len=m.max_extend_len, sliding_window=window,
        )  # fmt: skip
