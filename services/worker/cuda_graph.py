"""CUDA graphs of the decode forward, one per padded batch size (Triton backend on CUDA).

A decode step at batch 1 launches hundreds of small kernels from Python; replaying a captured
graph launches them in one call. Inputs live in static buffers: a step copies its ids, positions,
slots, rows and lengths into their first ``bs`` entries and pads the rest with a request that
reads and writes slot 0 only (the reserved padding slot) through the padding row of the
req->token table (row ``max_rows``, all zeros). ``kv_indptr`` and ``kv_indices`` are built inside
the graph, so nothing in it depends on host values.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import torch

from services.common.types import ForwardMode
from services.worker.forward_context import ForwardContext

if TYPE_CHECKING:
    from services.worker.engine import ModelRunner

logger = logging.getLogger(__name__)

_SIZES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512)


class DecodeGraphs:
    def __init__(self, runner: ModelRunner, max_bs: int) -> None:
        self.runner = runner
        self.sizes = [s for s in _SIZES if s <= max_bs] or [1]
        n, dev = self.sizes[-1], runner.device
        self.pad_row = runner.cfg.max_rows  # the table's extra, all-zero row
        i64 = {"dtype": torch.int64, "device": dev}
        self.input_ids = torch.zeros(n, **i64)
        self.positions = torch.zeros(n, **i64)
        self.out_cache_loc = torch.zeros(n, **i64)
        self.req_rows = torch.full((n,), self.pad_row, **i64)
        self.seq_lens = torch.ones(n, **i64)
        self.arange = torch.arange(n + 1, **i64)
        self.kv_indptr = torch.zeros(n + 1, **i64)
        self.kv_indices = torch.zeros(n * runner.max_context_len, dtype=torch.int32, device=dev)
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

    def run(self, t, bs_real: int) -> torch.Tensor:
        """Logits ``[bs_real, vocab]`` of a decode step whose tensors ``t`` came from batch.py."""
        bs = next(s for s in self.sizes if s >= bs_real)
        self.input_ids[:bs_real].copy_(t.input_ids)
        self.positions[:bs_real].copy_(t.positions)
        self.out_cache_loc[:bs_real].copy_(t.out_cache_loc)
        self.req_rows[:bs_real].copy_(t.req_rows)
        self.seq_lens[:bs_real].copy_(t.seq_lens)
        if bs > bs_real:  # padding requests: token 0 at position 0 in slot 0, row pad_row
            self.input_ids[bs_real:bs].zero_()
            self.positions[bs_real:bs].zero_()
            self.out_cache_loc[bs_real:bs].zero_()
            self.req_rows[bs_real:bs].fill_(self.pad_row)
            self.seq_lens[bs_real:bs].fill_(1)
        graph, logits = self.graphs[bs]
        graph.replay()
        return logits[:bs_real]

    def _context(self, bs: int) -> ForwardContext:
        r = self.runner
        return ForwardContext(
            mode=ForwardMode.DECODE,
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
            kv_pool=r.kv_pool,
            req_to_token=r.req_to_token.table,
            attn_backend=r.attn_backend,
        )

    def _forward(self, bs: int, ctx: ForwardContext) -> torch.Tensor:
        torch.cumsum(self.seq_lens[:bs], 0, out=self.kv_indptr[1 : bs + 1])
        self.runner.attn_backend.prepare_decode(ctx, self.kv_indices)
        return self.runner.model(self.input_ids[:bs], self.positions[:bs], ctx)

    def _capture(self, bs: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        ctx = self._context(bs)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up: Triton compiles and autotunes outside the capture
                self._forward(bs, ctx)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = self._forward(bs, ctx)
        self.pool = graph.pool()
        return graph, logits
