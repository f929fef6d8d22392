"""CUDA graphs of the decode forward, one per padded batch size (on CUDA, with an attention
backend that supports graphs: see the hooks of ``AttentionBackend``).

A decode step at batch 1 launches hundreds of small kernels from Python; replaying a captured
graph launches them in one call. Inputs live in static buffers: a step copies its ids, positions,
slots, rows and lengths into their first ``bs`` entries and pads the rest with a request that
reads and writes slot 0 only (the reserved padding slot) through the padding row of the
req->token table (its last row, all zeros). ``kv_indptr`` and the backend's metadata
(``prepare_captured_decode``) are built inside the graph, so nothing in it depends on host values.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import torch

from radixserve.common.types import ForwardMode
from radixserve.worker.forward_context import ForwardContext

if TYPE_CHECKING:
    from radixserve.worker.attention.base import AttentionBackend
    from radixserve.worker.kv_pool import KVPool, ReqToTokenTable
    from radixserve.worker.models.base import CausalLM

logger = logging.getLogger(__name__)

_SIZES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512)


class DecodeGraphs:
    """Captured decode forwards of ``model`` over ``kv_pool`` through ``backend``.

    ``req_to_token``'s last row is the padding row (all zeros, never handed to a request).
    """

    def __init__(
        self,
        model: CausalLM,
        backend: AttentionBackend,
        kv_pool: KVPool,
        req_to_token: ReqToTokenTable,
        max_bs: int,
    ) -> None:
        if not backend.supports_cuda_graphs:
            raise ValueError(f"the {backend.name} attention backend does not support CUDA graphs")
        self.model, self.backend, self.kv_pool = model, backend, kv_pool
        self.req_to_token = req_to_token.table
        self.sizes = [s for s in _SIZES if s <= max_bs] or [1]
        n, dev = self.sizes[-1], self.req_to_token.device
        self.pad_row = req_to_token.max_rows - 1
        backend.init_cuda_graph_state(n, req_to_token.max_context_len)
        i64 = {"dtype": torch.int64, "device": dev}
        self.input_ids = torch.zeros(n, **i64)
        self.positions = torch.zeros(n, **i64)
        self.out_cache_loc = torch.zeros(n, **i64)
        self.req_rows = torch.full((n,), self.pad_row, **i64)
        self.seq_lens = torch.ones(n, **i64)
        self.arange = torch.arange(n + 1, **i64)
        self.kv_indptr = torch.zeros(n + 1, **i64)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.pool = None

    def capture_all(self) -> None:
        start = time.perf_counter()
        for bs in reversed(self.sizes):  # largest first, so smaller ones reuse its memory
            self.graphs[bs] = self._capture(bs)
        logger.info(
            "captured %d decode CUDA graphs (batch %d..%d) in %.1fs",
            len(self.sizes), self.sizes[0], self.sizes[-1], time.perf_counter() - start,
        )  # fmt: skip

    def can_run(self, batch_size: int) -> bool:
        return batch_size <= self.sizes[-1]

    def run(self, ctx: ForwardContext) -> torch.Tensor:
        """Logits ``[B, vocab]`` of the decode step ``ctx`` (from ``batch.build_tensors``)."""
        graph, logits = self.graphs[self._stage(ctx)]
        graph.replay()
        return logits[: ctx.batch_size]

    def _stage(self, ctx: ForwardContext) -> int:
        """Copies ``ctx``'s inputs into the static buffers, padded; returns the graph's size."""
        bs_real = ctx.batch_size
        bs = next(s for s in self.sizes if s >= bs_real)
        self.input_ids[:bs_real].copy_(ctx.input_ids)
        self.positions[:bs_real].copy_(ctx.positions)
        self.out_cache_loc[:bs_real].copy_(ctx.out_cache_loc)
        self.req_rows[:bs_real].copy_(ctx.req_rows)
        self.seq_lens[:bs_real].copy_(ctx.seq_lens)
        if bs > bs_real:  # padding requests: token 0 at position 0 in slot 0, row pad_row
            self.input_ids[bs_real:bs].zero_()
            self.positions[bs_real:bs].zero_()
            self.out_cache_loc[bs_real:bs].zero_()
            self.req_rows[bs_real:bs].fill_(self.pad_row)
            self.seq_lens[bs_real:bs].fill_(1)
        return bs

    def _context(self, bs: int) -> ForwardContext:
        return ForwardContext(
            mode=ForwardMode.DECODE,
            input_ids=self.input_ids[:bs],
            positions=self.positions[:bs],
            out_cache_loc=self.out_cache_loc[:bs],
            req_rows=self.req_rows[:bs],
            seq_lens=self.seq_lens[:bs],
            prefix_lens=self.seq_lens[:bs],  # not read by the decode path
            qo_indptr=self.arange[: bs + 1],
            kv_indptr=self.kv_indptr[: bs + 1],
            logits_indices=self.arange[:bs],
            seq_lens_cpu=[1] * bs,  # NOTE: only sizes host-side buffers, which are static here
            qo_indptr_cpu=list(range(bs + 1)),
            extend_lens_cpu=[1] * bs,
            kv_pool=self.kv_pool,
            req_to_token=self.req_to_token,
            attn_backend=self.backend,
        )

    def _forward(self, ctx: ForwardContext) -> torch.Tensor:
        bs = ctx.batch_size
        torch.cumsum(self.seq_lens[:bs], 0, out=self.kv_indptr[1 : bs + 1])
        self.backend.prepare_captured_decode(ctx)
        return self.model(ctx.input_ids, ctx.positions, ctx)

    def _capture(self, bs: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        ctx = self._context(bs)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up: Triton compiles and autotunes outside the capture
                self._forward(ctx)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = self._forward(ctx)
        self.pool = graph.pool()
        return graph, logits
