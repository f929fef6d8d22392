"""The scheduler core: continuous batching over the worker's step protocol (no grpc, no torch).

One owner: ``Scheduler`` alone moves requests between ``waiting`` and ``running`` (add, admit,
retract, end). Prefill planning (prefill.py), retraction policy (retraction.py) and result
reading (results.py) return what they decided; the methods here apply it.

Overlap contract: the server may call ``next_step()`` for step N+1 before ``on_result(result_N)``;
results come back in step order. Decode steps need no token ids, so a request whose sampling
extend is in flight can decode in the very next step. A request finished by result N may sit in
step N+1 (that token is discarded); its slots are freed at once (see memory.py for why that is
safe) and its row goes out in the ``release_rows`` of the next step built, N+2 at the latest,
unless a new request takes the row first (its first step starts the row over; allocator.py).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from radixserve.common.outputs import FinishReason, RequestOutput
from radixserve.common.types import ForwardMode, ModelInfo, ReqInput, StepInput, StepOutput
from radixserve.scheduler.allocator import RowAllocator
from radixserve.scheduler.core_config import SchedulerCoreConfig
from radixserve.scheduler.memory import KVManager
from radixserve.scheduler.policy import make_schedule_policy
from radixserve.scheduler.prefill import PrefillState, plan_prefill
from radixserve.scheduler.request import Request, validate_request
from radixserve.scheduler.results import make_event, read_result
from radixserve.scheduler.retraction import decode_slots_needed, raised_ratio, victim_order
from radixserve.scheduler.stats import SchedulerStats

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
        self.max_running = min(cfg.max_running_requests or info.max_rows, info.max_rows)
        self.waiting: list[Request] = []
        self.running: dict[str, Request] = {}  # every request holding a row, in admission order
        self.chunked: Request | None = None  # the request mid-chunk, if any
        self.new_token_ratio = cfg.init_new_token_ratio
        self._requests: dict[str, Request] = {}
        self._inflight: deque[_Flight] = deque()
        self._next_step_id = 0
        self._retracted_now = False  # a retraction happened while building this step
        SchedulerStats.__init__(self)

    @property
    def max_request_len(self) -> int:
        """Longest prompt + max_new_tokens that one request may ask for (context and KV pool)."""
        return min(self.info.max_context_len, self.kv.capacity + 1)

    # -- transitions (the only places that change waiting / running) -----------------------
    def add_request(self, req: Request) -> None:
        """Queue ``req``; raise ValueError naming the field when it can never run."""
        if req.rid in self._requests:
            raise ValueError(f"rid: request {req.rid!r} already exists")
        validate_request(req, self.info, self.kv.capacity, self.kv.page_size)
        req.stop_set = req.stop_ids(self.info.eos_token_ids)
        self._requests[req.rid] = req
        self.waiting.append(req)

    def _admit(self, admitted: list[Request]) -> None:
        """Waiting -> running, for requests that a prefill plan gave slots and a row."""
        for req in admitted:
            self.running[req.rid] = req
            self._record_admission(req)
        ids = {id(r) for r in admitted}
        self.waiting = [r for r in self.waiting if id(r) not in ids]

    def _retract(self, req: Request) -> None:
        """Running -> waiting: its computed prefix stays in the cache when possible."""
        self._drop_running(req)
        req.version += 1
        req.prefill_target = 0
        req.num_retractions += 1
        self.num_retractions += 1
        self.waiting.append(req)
        self._retracted_now = True

    def _end(self, req: Request, reason: FinishReason) -> None:
        """Waiting or running -> gone, freeing everything it holds."""
        del self._requests[req.rid]
        req.finish_reason = reason
        if req.is_running:
            self._drop_running(req)
        else:
            self.waiting.remove(req)
        self.num_finished += 1

    def _drop_running(self, req: Request) -> None:
        del self.running[req.rid]
        if self.chunked is req:
            self.chunked = None
        self.kv.release(req)
        self.rows.release(req.row)
        req.row = -1
        req.pending_samples = 0

    def abort(self, rid: str) -> bool:
        """Abort a waiting or running request, freeing everything it holds; no event is sent."""
        req = self._requests.get(rid)
        if req is None:
            return False
        self._end(req, FinishReason.abort())
        logger.debug("aborted %s", rid)
        return True

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
            extends = [] if self._retracted_now else self._schedule_prefill()
        else:
            extends = self._schedule_prefill()
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

    def _schedule_prefill(self) -> list[tuple[Request, ReqInput]]:
        if self.chunked is None and (not self.waiting or len(self.running) >= self.max_running):
            return []  # NOTE: the common decode-only step builds nothing here
        state = PrefillState(
            self.waiting,
            list(self.running.values()),
            self.chunked,
            self.new_token_ratio,
            self.max_running,
        )
        plan = plan_prefill(self.cfg, self.kv, self.rows, self.policy, state)
        self._admit(plan.admitted)
        self.chunked = plan.chunked
        for req, _ in plan.pairs:
            # Prompt (or chunk) KV goes to the tree at once, so later requests share it.
            # NOTE: after admission, so no request of this step reads KV this step writes.
            self.kv.cache_unfinished(req)
        return plan.pairs

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
        cands = self._make_room(cands)
        if not cands:
            return []
        out = []
        for r, slot in zip(cands, self.kv.grow_decode(cands), strict=True):
            r.pending_samples += 1
            out.append((r, ReqInput(row=r.row, new_slots=[slot])))
        return out

    def _make_room(self, cands: list[Request]) -> list[Request]:
        """Evict, then retract (retraction.py picks), until one decode step of the returned
        requests fits."""
        kv = self.kv
        need = decode_slots_needed(kv, cands)
        if kv.ensure(need):
            return cands
        victims = victim_order(cands)
        keep = list(cands)
        while not kv.ensure(need):
            if self.chunked is not None:
                self._retract(self.chunked)
                continue
            if len(keep) == 1:
                if len(self.running) == 1:
                    # NOTE: impossible while validate_request holds: a request fits alone.
                    raise RuntimeError(f"request {keep[0].rid} ran out of KV slots alone")
                return []  # wait for the results in flight to free memory
            victim = victims.pop()
            keep.remove(victim)
            need -= decode_slots_needed(kv, [victim])
            self._retract(victim)
        self.new_token_ratio = raised_ratio(self.cfg, keep, self.new_token_ratio)
        logger.info(
            "retracted %d requests; %d decode, new_token_ratio %.3f",
            len(cands) - len(keep),
            len(keep),
            self.new_token_ratio,
        )
        return keep

    # -- results ----------------------------------------------------------------------------
    def on_result(self, out: StepOutput) -> list[RequestOutput]:
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
        decision = read_result(flight.entries, out, self.info.max_context_len)
        for req, reason in decision.finished:
            self._end(req, reason)
        self.generated_tokens_total += decision.produced
        self._record_result(out)
        return decision.events

    def fail_step(self, step_id: int, message: str) -> list[RequestOutput]:
        """The worker could not run step ``step_id`` (the oldest in flight): its requests end
        with an error (an event each) and are freed."""
        flight = self._inflight[0] if self._inflight else None
        if flight is None or flight.step_id != step_id:
            raise ValueError(f"step_id: step {step_id} is not the oldest in flight")
        self._inflight.popleft()
        events = []
        for req, _, _ in flight.entries:
            if req.finished or req.rid not in self._requests:
                continue
            self._end(req, FinishReason.error(message))
            events.append(make_event(req, [], None))
        return events

    def fail_all(self, message: str) -> list[RequestOutput]:
        """End every live request with an error (an event each), e.g. the worker went away and
        its rows with it; steps in flight are forgotten."""
        self._inflight.clear()
        events = []
        for req in list(self._requests.values()):
            self._end(req, FinishReason.error(message))
            events.append(make_event(req, [], None))
        return events

    def flush_cache(self) -> tuple[bool, int]:
        """Evict every unlocked radix-cache entry; return (success, slots freed).

        Entries locked by running requests stay, so success is False while any remain.
        """
        freed = self.kv.flush()
        return self.kv.cached == 0, freed
