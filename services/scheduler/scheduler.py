"""The scheduler core: continuous batching over the worker's step protocol (no grpc, no torch).

Overlap contract: the server may call ``next_step()`` for step N+1 before ``on_result(result_N)``;
results come back in step order. Decode steps need no token ids, so a request whose sampling
extend is in flight can decode in the very next step. A request finished by result N may sit in
step N+1 (that token is discarded); its slots are freed at once (see memory.py for why that is
safe) and its row goes out in the ``release_rows`` of the next step built, N+2 at the latest.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from services.common.types import ForwardMode, ModelInfo, ReqInput, StepInput, StepOutput
from services.scheduler.allocator import RowAllocator
from services.scheduler.core_config import SchedulerCoreConfig
from services.scheduler.memory import KVManager
from services.scheduler.policy import make_schedule_policy
from services.scheduler.prefill import schedule_prefill
from services.scheduler.request import FinishReason, Request, TokenEvent, validate_request
from services.scheduler.results import apply_result, make_event
from services.scheduler.retraction import make_room
from services.scheduler.stats import SchedulerStats

__all__ = ["Scheduler", "SchedulerCoreConfig"]

logger = logging.getLogger(__name__)


@dataclass
class _Flight:
    step_id: int
    entries: list[tuple[Request, int, bool]]  # (request, its version, samples a token)


class Scheduler(SchedulerStats):
    def __init__(self, cfg: SchedulerCoreConfig, info: ModelInfo) -> None:
        page_size = cfg.page_size or info.page_size
        if page_size % max(info.page_size, 1):
            logger.warning(
                "page_size %d is not a multiple of the worker's %d; using the worker's",
                page_size,
                info.page_size,
            )
            page_size = info.page_size
        self.cfg = cfg
        self.info = info
        self.kv = KVManager(info.num_slots, page_size, cfg.enable_cache, cfg.eviction_policy)
        self.rows = RowAllocator(info.max_rows)
        self.policy = make_schedule_policy(cfg.schedule_policy)
        self.policy.configure(cfg)
        if info.max_rows < 2:
            raise ValueError(
                f"max_rows: the worker must offer at least 2 rows, got {info.max_rows}"
            )
        # NOTE: one row is kept spare. Released rows are reusable only once a step has carried
        # them, so with every row taken and nothing to run, no step could ever free one.
        self.max_running = min(cfg.max_running_requests, info.max_rows - 1)
        self.waiting: list[Request] = []
        self.running: dict[str, Request] = {}  # every request holding a row, in admission order
        self.chunked: Request | None = None  # the request mid-chunk, if any
        self.new_token_ratio = cfg.init_new_token_ratio
        self._requests: dict[str, Request] = {}
        self._inflight: deque[_Flight] = deque()
        self._events: list[TokenEvent] = []
        self._next_step_id = 0
        self._retracted_now = False  # a retraction happened while building this step
        SchedulerStats.__init__(self)

    # -- requests ---------------------------------------------------------------------------
    def add_request(self, req: Request) -> None:
        """Queue ``req``; raise ValueError naming the field when it can never run."""
        if req.rid in self._requests:
            raise ValueError(f"rid: request {req.rid!r} already exists")
        validate_request(req, self.info, self.kv.capacity, self.kv.page_size)
        req.stop_set = req.stop_ids(self.info.eos_token_ids)
        self._requests[req.rid] = req
        self.waiting.append(req)

    def abort(self, rid: str) -> bool:
        """Abort a waiting or running request, freeing everything it holds; no event is sent."""
        req = self._requests.pop(rid, None)
        if req is None:
            return False
        if not req.is_running:
            self.waiting.remove(req)
        self._finish(req, FinishReason.abort())
        logger.debug("aborted %s", rid)
        return True

    def _finish(self, req: Request, reason: FinishReason) -> None:
        req.finish_reason = reason
        if req.is_running:
            self._drop_running(req)
        self.num_finished += 1

    def _drop_running(self, req: Request) -> None:
        del self.running[req.rid]
        if self.chunked is req:
            self.chunked = None
        self.kv.release(req)
        self.rows.release(req.row)
        req.row = -1
        req.pending_samples = 0

    def _retract(self, req: Request) -> None:
        """Back to the queue: its computed prefix stays in the cache when possible."""
        self._drop_running(req)
        req.version += 1
        req.prefill_target = 0
        req.num_retractions += 1
        self.num_retractions += 1
        self.waiting.append(req)
        self._retracted_now = True

    def _oom_abort(self, req: Request) -> None:
        """A request that cannot run even alone: finish it with an abort event."""
        if not req.is_running:
            self.waiting.remove(req)
        self._requests.pop(req.rid, None)
        self._finish(req, FinishReason.abort("KV cache capacity exceeded"))
        self._events.append(make_event(req, [], None))
        logger.warning("request %s aborted: KV cache capacity exceeded", req.rid)

    # -- steps ------------------------------------------------------------------------------
    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self._inflight)

    @property
    def num_inflight(self) -> int:
        return len(self._inflight)

    def next_step(self) -> StepInput | None:
        """Build the next step (EXTEND when new prefill fits, else DECODE); None when idle."""
        self._retracted_now = False
        if self.cfg.enable_mixed_chunk:
            decodes = self._schedule_decode()
            extends = [] if self._retracted_now else schedule_prefill(self)
        else:
            extends = schedule_prefill(self)
            decodes = [] if extends else self._schedule_decode()
        if not extends and not decodes:
            return None
        mode = ForwardMode.EXTEND if extends else ForwardMode.DECODE
        if extends and decodes:
            mode = ForwardMode.MIXED
        if decodes and not self._retracted_now:
            ratio = self.new_token_ratio - self.cfg.ratio_decay
            self.new_token_ratio = max(self.cfg.min_new_token_ratio, ratio)
        pairs = extends + decodes
        step = StepInput(
            step_id=self._next_step_id,
            mode=mode,
            reqs=[ri for _, ri in pairs],
            release_rows=self.rows.take_pending(),
        )
        self._next_step_id += 1
        entries = [(r, r.version, ri.sample) for r, ri in pairs]
        self._inflight.append(_Flight(step.step_id, entries))
        self._record_step(step)
        return step

    def _schedule_decode(self) -> list[tuple[Request, ReqInput]]:
        ctx = self.info.max_context_len
        # NOTE: hot loop at large batch; the properties prefilling / remaining_new_tokens inlined.
        cands = [
            r
            for r in self.running.values()
            if r.prefill_target <= len(r.slots) < ctx
            and len(r.output_ids) + r.pending_samples < r.sampling.max_new_tokens
        ]
        if not cands:
            return []
        cands = make_room(self, cands)
        if not cands:
            return []
        out = []
        for r, slot in zip(cands, self.kv.grow_decode(cands), strict=True):
            r.pending_samples += 1
            out.append((r, ReqInput(row=r.row, new_slots=[slot])))
        return out

    # -- results ----------------------------------------------------------------------------
    def on_result(self, out: StepOutput) -> list[TokenEvent]:
        """Apply the result of the oldest step in flight; return the per-request token events."""
        if not self._inflight:
            raise RuntimeError("on_result: no step in flight")
        flight = self._inflight[0]
        if out.step_id != flight.step_id or len(out.token_ids) != len(flight.entries):
            raise ValueError(
                f"step_id: result of step {out.step_id} with {len(out.token_ids)} tokens, "
                f"expected step {flight.step_id} with {len(flight.entries)}"
            )
        self._inflight.popleft()
        events, self._events = self._events, []
        apply_result(self, flight.entries, out, events)
        self._record_result(out)
        return events

    def _on_finished(self, req: Request, reason: FinishReason) -> None:
        self._requests.pop(req.rid, None)
        self._finish(req, reason)

    def fail_step(self, step: StepInput, message: str) -> list[TokenEvent]:
        """The worker could not run ``step``: abort its requests (an event each) and free them."""
        flight = self._inflight[0] if self._inflight else None
        if flight is None or flight.step_id != step.step_id:
            raise ValueError(f"step_id: step {step.step_id} is not the oldest in flight")
        self._inflight.popleft()
        events, self._events = self._events, []
        for req, _, _ in flight.entries:
            if req.finished or req.rid not in self._requests:
                continue
            if not req.is_running:  # retracted meanwhile
                self.waiting.remove(req)
            del self._requests[req.rid]
            self._finish(req, FinishReason.abort(message))
            events.append(make_event(req, [], None))
        return events

    def abort_all(self, message: str) -> list[TokenEvent]:
        """Abort every live request with an event each (e.g. the worker restarted and lost its
        rows); steps in flight are forgotten."""
        self._inflight.clear()
        events, self._events = self._events, []
        for req in list(self._requests.values()):
            if not req.is_running:
                self.waiting.remove(req)
            del self._requests[req.rid]
            self._finish(req, FinishReason.abort(message))
            events.append(make_event(req, [], None))
        return events

    def take_events(self) -> list[TokenEvent]:
        """Events made outside ``on_result`` (scheduler aborts) when no step is in flight."""
        events, self._events = self._events, []
        return events

    def flush_cache(self) -> tuple[bool, int]:
        """Evict every unlocked radix-cache entry; return (success, slots freed).

        Entries locked by running requests stay, so success is False while any remain.
        """
        freed = self.kv.flush()
        return self.kv.cached == 0, freed
