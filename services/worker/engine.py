"""The model runner: weights, KV pool, req->token table and sampling behind ``step()``.

``ModelRunner.step`` implements the scheduler -> worker step contract documented in
``services.common.types`` (no grpc here; ``server.py`` wraps it).
"""

from __future__ import annotations

import logging
import os
import time

import torch

from services.common.model_source import resolve_model
from services.common.types import ModelInfo, StepInput, StepOutput
from services.worker.attention import AttentionBackend
from services.worker.batch import Limits, build_tensors, plan_step
from services.worker.forward_context import ForwardContext
from services.worker.kv_pool import KVPool, ReqToTokenTable
from services.worker.layers import ops
from services.worker.loader import load_model
from services.worker.rows import RowTable
from services.worker.runner_config import (
    RunnerConfig,
    pick_backend,
    resolve_device_dtype,
    size_pool,
)
from services.worker.sampling import Sampler

logger = logging.getLogger(__name__)

__all__ = ["ModelRunner", "RunnerConfig"]


class ModelRunner:
    """Owns every tensor of one worker and runs one scheduler step at a time."""

    def __init__(self, cfg: RunnerConfig) -> None:
        self.cfg = cfg
        self.device, self.dtype = resolve_device_dtype(cfg.device, cfg.dtype)
        torch.manual_seed(cfg.seed)
        self.source = resolve_model(cfg.model, cfg.load_format)
        self.model, self.config = load_model(
            self.source, self.dtype, self.device, cfg.max_context_len, cfg.seed
        )
        c = self.config
        self.max_context_len = cfg.max_context_len or c.max_position_embeddings
        num_slots = cfg.num_slots or size_pool(
            cfg, c, self.dtype, self.device, self.max_context_len
        )
        self.kv_pool = KVPool(
            c.num_layers, num_slots, c.num_kv_heads, c.head_dim, self.dtype, self.device
        )
        self.req_to_token = ReqToTokenTable(cfg.max_rows, self.max_context_len, self.device)
        backend_cls = pick_backend(cfg.attention_backend, self.device)
        self.attn_backend: AttentionBackend = backend_cls(self.kv_pool, c.num_heads, c.head_dim)
        if backend_cls.name == "triton" and "RADIXSERVE_OPS" not in os.environ:
            ops.select("triton")  # NOTE: process-wide; one model per worker process
        self.rows = RowTable(cfg.max_rows, self.device)
        self.sampler = Sampler(self.device, cfg.seed)
        self.limits = Limits(cfg.max_rows, num_slots, self.max_context_len, c.vocab_size)
        self.info = self._info()
        logger.info("model runner ready: %s", self.info)

    def _info(self) -> ModelInfo:
        c = self.config
        return ModelInfo(
            model_name=self.source.name,
            vocab_size=c.vocab_size,
            max_context_len=self.max_context_len,
            num_slots=self.kv_pool.num_slots,
            max_rows=self.cfg.max_rows,
            eos_token_ids=c.eos_token_ids,
            num_layers=c.num_layers,
            hidden_size=c.hidden_size,
            num_heads=c.num_heads,
            num_kv_heads=c.num_kv_heads,
            head_dim=c.head_dim,
            dtype=str(self.dtype).removeprefix("torch."),
            device=str(self.device),
        )

    def reset(self) -> None:
        """Forgets every row (a new scheduler session starts); weights and KV stay."""
        self.rows.clear()

    @torch.inference_mode()
    def step(self, batch: StepInput) -> StepOutput:
        """Run one step; ValueError (state unchanged) when the step breaks the contract."""
        start = time.perf_counter()
        if not batch.reqs:  # a step that only releases rows
            self.release(batch.release_rows)
            return StepOutput(step_id=batch.step_id, token_ids=[])
        plans = plan_step(batch, self.rows, self.limits)
        for p in plans:  # NOTE: after validation only, so a bad step changes nothing
            if p.state is None:  # the row's first step (or a new request reusing it)
                p.state = self.rows.start(p.req.row, p.req.sampling, p.start)
            p.state.seq_len = p.end
        t = build_tensors(plans, self.device)
        self.req_to_token.write(t.write_rows, t.write_cols, t.write_slots)
        ctx = self._context(batch, t)
        self.attn_backend.prepare(ctx)
        logits = self.model(t.input_ids, t.positions, ctx)
        token_ids, logprobs = self._sample(plans, logits)
        for rid in batch.release_rows:
            self.rows.release(rid)
        return StepOutput(
            step_id=batch.step_id,
            token_ids=token_ids,
            logprobs=logprobs,
            forward_seconds=time.perf_counter() - start,
        )

    def _context(self, batch: StepInput, t) -> ForwardContext:
        return ForwardContext(
            mode=batch.mode,
            out_cache_loc=t.out_cache_loc,
            req_rows=t.req_rows,
            seq_lens=t.seq_lens,
            prefix_lens=t.prefix_lens,
            qo_indptr=t.qo_indptr,
            kv_indptr=t.kv_indptr,
            logits_indices=t.logits_indices,
            seq_lens_cpu=t.seq_lens_cpu,
            qo_indptr_cpu=t.qo_indptr_cpu,
            extend_lens_cpu=t.extend_lens_cpu,
            kv_pool=self.kv_pool,
            req_to_token=self.req_to_token.table,
            attn_backend=self.attn_backend,
        )

    def _sample(self, plans, logits: torch.Tensor) -> tuple[list[int], list[float] | None]:
        sampled = [p for p in plans if p.req.sample]
        token_ids, logprobs = [-1] * len(plans), None
        if not sampled:
            return token_ids, None
        states = [p.state for p in sampled]
        ids, lps = self.sampler.sample(
            logits, [s.sampling for s in states], [s.generator for s in states]
        )
        ids_list = ids.tolist()
        lps_list = lps.tolist() if lps is not None else None
        if lps_list is not None:
            logprobs = [0.0] * len(plans)
        j = 0
        for i, p in enumerate(plans):
            if not p.req.sample:
                p.state.last_token = None
                continue
            p.state.last_token = token_ids[i] = ids_list[j]
            if logprobs is not None:
                logprobs[i] = lps_list[j] if p.state.sampling.logprobs else 0.0
            j += 1
        return token_ids, logprobs

    def release(self, rows: list[int]) -> None:
        """Forget rows outside a step (e.g. on stream reset)."""
        for rid in rows:
            self.rows.release(rid)

    @property
    def num_live_rows(self) -> int:
        return len(self.rows)
