"""The model runner: weights, KV pool, req->token table and sampling behind ``step()``.

``ModelRunner.step`` implements the scheduler -> worker step contract documented in
``services.common.types`` (no grpc here; ``server.py`` wraps it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import cast

import torch

from radixserve.common.model_source import resolve_model
from radixserve.common.types import (
    ForwardMode,
    ModelInfo,
    StepInput,
    StepOutput,
    TopLogprobs,
)
from radixserve.worker.attention import AttentionBackend
from radixserve.worker.batch import build_tensors, is_sampled_decode
from radixserve.worker.cuda_graph import DecodeGraphs
from radixserve.worker.grammar import RowConstraints
from radixserve.worker.kv_pool import KVPool, ReqToTokenTable
from radixserve.worker.layers.ops import get_ops
from radixserve.worker.loader import load_model
from radixserve.worker.parallel import local_heads
from radixserve.worker.parallel.group import TPGroup
from radixserve.worker.penalties import PenaltyBank, mask_tokens
from radixserve.worker.plan import Limits, StartedPlan, plan_step
from radixserve.worker.rows import RowState, RowTable
from radixserve.worker.runner_config import (
    RunnerConfig,
    pick_backend,
    pick_ops,
    resolve_device_dtype,
    size_pool,
)
from radixserve.worker.sampling import Sampler

logger = logging.getLogger(__name__)

__all__ = ["ModelRunner", "RunnerConfig"]


class ModelRunner:
    """Owns every tensor of one worker and runs one scheduler step at a time."""

    def __init__(self, cfg: RunnerConfig, tp: TPGroup | None = None) -> None:
        self.cfg = cfg
        self.device, self.dtype = resolve_device_dtype(cfg.device, cfg.dtype)
        self.tp = tp if tp is not None else TPGroup(device=self.device)  # size 1: no collectives
        if cfg.custom_all_reduce:
            self.tp.enable_fast_all_reduce(self.dtype)
        torch.manual_seed(cfg.seed)
        self.source = resolve_model(cfg.model, cfg.load_format)
        backend_cls = pick_backend(cfg.attention_backend, self.device)
        # NOTE: the model's own ops, fixed at construction (another model may use others).
        self.ops = get_ops(pick_ops(cfg.ops, backend_cls.name, self.device))
        self.model, self.config = load_model(
            self.source,
            self.dtype,
            self.device,
            cfg.max_context_len,
            cfg.seed,
            tp=self.tp,
            ops=self.ops,
        )
        # NOTE: the KV pool and attention see this rank's heads only; ModelInfo the model's.
        heads, kv_heads = local_heads(self.config.num_heads, self.config.num_kv_heads, self.tp.size)
        c = dataclasses.replace(self.config, num_heads=heads, num_kv_heads=kv_heads)
        self.max_context_len = cfg.max_context_len or c.max_position_embeddings
        num_slots = cfg.num_slots or size_pool(
            cfg, c, self.dtype, self.device, self.max_context_len
        )
        num_slots = self.tp.min_int(num_slots)  # every rank must hold every slot
        self.kv_pool = KVPool(
            c.num_layers, num_slots, c.num_kv_heads, c.head_dim, self.dtype, self.device
        )
        # NOTE: one extra, all-zero row: the padding row of CUDA-graph decode batches.
        self.req_to_token = ReqToTokenTable(cfg.max_rows + 1, self.max_context_len, self.device)
        windows = c.sliding_windows(self.max_context_len)  # the model's sliding layers
        self.attn_backend: AttentionBackend = backend_cls(
            self.kv_pool, c.num_heads, c.head_dim, windows
        )
        self.penalties = PenaltyBank(c.vocab_size, self.device)  # empty until a row needs it
        self.rows = RowTable(cfg.max_rows, self.device, self.penalties)
        self.sampler = Sampler(self.device, cfg.seed)
        # Grammar matchers and logit biases, only for rows that ask (structured output).
        self.constraints = RowConstraints(
            c.vocab_size, self.device, self.source, c.eos_token_ids, cfg.grammar_overlap
        )
        self.limits = Limits(cfg.max_rows, num_slots, self.max_context_len, c.vocab_size)
        self.graphs = self._capture_graphs()
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
            tp_size=self.tp.size,
        )

    def reset(self) -> None:
        """Forgets every row (a new scheduler session starts); weights and KV stay."""
        self.rows.clear()
        self.constraints.clear()

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
                p.state = self.rows.start(p.req.row, p.req.sampling, p.start, p.req.prompt_len)
                if not self.tp.rank:  # NOTE: only rank 0 samples: followers keep no matchers
                    self.constraints.start(p.req.row, p.state.sampling, p.req.prompt_len)
            if self.constraints.active and p.req.token_ids is not None:
                self.constraints.extend(p.req.row, p.start, p.req.prefix_ids, p.req.token_ids)
            p.state.seq_len = p.end
        # NOTE: every plan's row is started now; what follows reads their states.
        started = cast("list[StartedPlan]", plans)
        if self.rows.num_adjusted:
            self._record_inputs(started)
        ctx = build_tensors(started, batch.mode, self.kv_pool, self.req_to_token, self.attn_backend)
        if self._graph_step(batch.mode, started):
            assert self.graphs is not None  # NOTE: _graph_step checked it
            logits = self.graphs.run(ctx)
        else:
            self.attn_backend.prepare(ctx)
            logits = self.model(ctx.input_ids, ctx.positions, ctx)
        if self.tp.rank:  # TP follower: rank 0 samples
            out = StepOutput(step_id=0, token_ids=[-1] * len(plans))
        else:
            out = self._sample(started, logits)
        self.release(batch.release_rows)
        out.step_id = batch.step_id
        out.forward_seconds = time.perf_counter() - start
        return out

    def _capture_graphs(self) -> DecodeGraphs | None:
        max_bs = min(self.cfg.cuda_graph_max_bs, self.cfg.max_rows)
        if self.device.type != "cuda" or max_bs < 1:
            return None
        if not self.attn_backend.supports_cuda_graphs:
            logger.info("no decode CUDA graphs: the %s backend has none", self.attn_backend.name)
            return None
        graphs = DecodeGraphs(
            self.model, self.attn_backend, self.kv_pool, self.req_to_token, max_bs
        )
        graphs.capture_all()
        return graphs

    def _graph_step(self, mode: ForwardMode, plans: list[StartedPlan]) -> bool:
        return (
            self.graphs is not None
            and self.graphs.can_run(len(plans))
            and is_sampled_decode(mode, plans)
        )

    def _record_inputs(self, plans: list[StartedPlan]) -> None:
        """Adds the step's new prompt (or re-prefilled output) ids to the rows' penalty stats."""
        slots: list[int] = []
        ids: list[int] = []
        is_output: list[bool] = []
        for p in plans:
            st, req = p.state, p.req
            if st.bank_slot is None or req.token_ids is None:
                continue  # decode inputs were counted when they were sampled
            row_ids = list(req.prefix_ids or ()) if req.sampling is not None else []
            first = p.start - len(row_ids)
            row_ids += req.token_ids
            slots += [st.bank_slot] * len(row_ids)
            ids += row_ids
            is_output += [0 < st.prompt_len <= first + j for j in range(len(row_ids))]
        self.penalties.record(slots, ids, is_output)

    def _sample(self, plans: list[StartedPlan], logits: torch.Tensor) -> StepOutput:
        sampled = [p for p in plans if p.req.sample]
        out = StepOutput(step_id=0, token_ids=[-1] * len(plans))
        if not sampled:
            return out
        states = [p.state for p in sampled]
        params = [s.sampling for s in states]
        raw = logits.float()
        work = self._adjust(raw, sampled) if self.rows.num_adjusted else raw
        if self.constraints.active:  # NOTE: 0 for unconstrained batches: nothing runs here
            work = work.clone() if work is raw else work
            self.constraints.apply(work, [p.req.row for p in sampled])
        ids, lps = self.sampler.sample(work, params, [s.generator for s in states], raw=raw)
        top = None
        if any(sp.top_logprobs for sp in params):
            top = self.sampler.top_logprobs(
                raw, [sp.top_logprobs if sp.logprobs else 0 for sp in params]
            )
        penalized = []
        if self.rows.num_adjusted:
            penalized = [j for j, s in enumerate(states) if s.bank_slot is not None]
        if penalized:
            # NOTE: penalized holds only rows with a bank slot.
            slots = cast("list[int]", [states[j].bank_slot for j in penalized])
            self.penalties.record_sampled(slots, ids[penalized])
        ids_list = ids.tolist()
        if self.constraints.active:  # the matchers follow their rows (on the mask thread)
            self.constraints.advance([p.req.row for p in sampled], ids_list)
        self._scatter(plans, out, ids_list, lps.tolist() if lps is not None else None, top)
        return out

    def _adjust(self, raw: torch.Tensor, sampled: list[StartedPlan]) -> torch.Tensor:
        """``raw`` with penalties and min_new_tokens applied (a copy), or ``raw`` itself."""
        pen = [(j, p.state) for j, p in enumerate(sampled) if p.state.bank_slot is not None]
        short = [
            (j, p.state)
            for j, p in enumerate(sampled)
            if p.state.generated_before(p.end) < p.state.sampling.min_new_tokens
        ]
        if not pen and not short:
            return raw
        work = raw.clone()
        if pen:
            self.penalties.apply(
                work,
                [j for j, _ in pen],
                cast("list[int]", [s.bank_slot for _, s in pen]),  # NOTE: pen has bank slots
                [s.sampling for _, s in pen],
            )
        if short:
            mask_tokens(work, [j for j, _ in short], [self._stop_ids(s) for _, s in short])
        return work

    def _stop_ids(self, state: RowState) -> list[int]:
        sp = state.sampling
        eos = () if sp.ignore_eos else self.config.eos_token_ids
        return [*sp.stop_token_ids, *eos]

    @staticmethod
    def _scatter(
        plans: list[StartedPlan],
        out: StepOutput,
        ids: list[int],
        lps: list[float] | None,
        top: list[TopLogprobs | None] | None,
    ) -> None:
        """Spreads the sampled rows' results over the step's request order."""
        n = len(plans)
        if lps is not None:
            out.logprobs = [0.0] * n
        if top is not None:
            out.top_logprobs = [None] * n
        j = 0
        for i, p in enumerate(plans):
            if not p.req.sample:
                p.state.last_token = None
                continue
            p.state.last_token = out.token_ids[i] = ids[j]
            if not p.state.prompt_len:  # not told: the prompt ends where sampling starts
                p.state.prompt_len = p.end
            if lps is not None and p.state.sampling.logprobs:
                assert out.logprobs is not None  # NOTE: set above when lps is
                out.logprobs[i] = lps[j]
            if top is not None:
                assert out.top_logprobs is not None  # NOTE: set above when top is
                out.top_logprobs[i] = top[j]
            j += 1

    def release(self, rows: list[int]) -> None:
        """Forget rows outside a step (e.g. on stream reset)."""
        for rid in rows:
            self.rows.release(rid)
            self.constraints.release(rid)

    @property
    def num_live_rows(self) -> int:
        return len(self.rows)
