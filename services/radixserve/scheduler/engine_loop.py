"""The step loop: drives the scheduler core over the worker's step stream, one step ahead, and
supervises the worker link. Domain types only: protobuf stays in server.py and clients.py.

NOTE (overlap): step N+1 is built and sent before step N's result is read, so the worker always
has the next step queued while it computes. At most two steps are in flight; results come back in
order and are handed to the core, which drops requests that finished in step N from step N+2.

NOTE (supervision): any failure of the stream (an error, EOF, a write on a finished call, a result
that does not match, no result within ``step_timeout``) means the worker is gone or unusable. Its
rows and KV are lost, so every live request ends with an ERROR "worker unavailable: ...", the core
is dropped, readiness turns NOT_SERVING and new requests are refused until the loop has
reconnected (with backoff) and rebuilt the core from the new worker's info.

NOTE (drain): after :meth:`EngineLoop.start_drain` (SIGTERM) readiness stays NOT_SERVING and new
requests are refused, while the loop keeps stepping the running and queued ones; server.py waits
for :attr:`EngineLoop.has_work` to clear (or the drain period to pass), then ends the rest with
:meth:`EngineLoop.end_all`.

NOTE (rejected step): a step the worker rejects wrote no KV, yet its prompt KV is already in the
radix cache, where a later step may have matched it. So a rejected step ends every live request
with an ERROR "worker step failed: ...", and a fresh core and stream start a new worker session
(readiness stays: the worker is fine).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace

from radixserve.common.aio import wait_while
from radixserve.common.errors import SCHEDULER_OVERLOADED
from radixserve.common.outputs import FinishReason, Outputs, RequestOutput
from radixserve.common.types import ModelInfo, StepOutput
from radixserve.scheduler.engine_io import (
    ClientStream,
    LoopConfig,
    StepFailed,
    StepRejected,
    StepStream,
    WorkerGone,
    WorkerLink,
)
from radixserve.scheduler.metrics import SchedulerMetrics
from radixserve.scheduler.request import Request
from radixserve.scheduler.scheduler import Scheduler
from radixserve.scheduler.stats import LoadStats

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT = 2
IDLE_STATS = LoadStats(0, 0, 0.0, 0.0, 0.0, 0, 0, 0, 0, 0)


class EngineLoop:
    def __init__(
        self,
        worker: WorkerLink,
        make_core: Callable[[ModelInfo], Scheduler],
        metrics: SchedulerMetrics,
        cfg: LoopConfig | None = None,
        on_ready: Callable[[bool], Awaitable[None]] | None = None,
    ) -> None:
        self.worker = worker
        self.make_core = make_core
        self.metrics = metrics
        self.cfg = cfg or LoopConfig()
        self.on_ready = on_ready
        self.core: Scheduler | None = None  # None while the worker is unavailable
        self.info: ModelInfo | None = None  # what clients are told (max_context_len: usable)
        self._worker_info: ModelInfo | None = None  # what the worker said
        self.ready = False
        self.draining = False  # SIGTERM: running requests finish, new ones are refused
        self.down_reason = "worker unavailable: not connected yet"
        self.clients: dict[int, ClientStream] = {}
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._in_flight: deque[int] = deque()
        self._last_result = time.perf_counter()
        self._retractions_seen = 0

    # -- tokenizer side ---------------------------------------------------------------------
    def register(self) -> ClientStream:
        client = ClientStream(next(self._ids))
        self.clients[client.client_id] = client
        return client

    def unregister(self, client: ClientStream) -> None:
        """A tokenizer went away: abort all of its requests so that nothing leaks."""
        if self.core is not None:
            for rid in client.rids:
                self.core.abort(client.key(rid))
        client.rids.clear()
        self.clients.pop(client.client_id, None)
        self._wake.set()

    def add_requests(self, client: ClientStream, reqs: list[Request]) -> None:
        """Queue requests whose rids are the tokenizer's own; refuse those that cannot run."""
        for req in reqs:
            rid = req.rid
            if self.draining:
                message = "scheduler unavailable: shutting down (draining)"
                self.refuse(client, rid, message, len(req.input_ids), retry_elsewhere=True)
                continue
            try:
                if self.core is None:
                    raise WorkerGone(self.down_reason)
                if rid in client.rids:
                    raise ValueError(f"rid: {rid!r} is already running")
                if self.cfg.max_waiting and len(self.core.waiting) >= self.cfg.max_waiting:
                    raise ValueError(
                        f"{SCHEDULER_OVERLOADED}: {len(self.core.waiting)} requests waiting "
                        f"(max_waiting_requests={self.cfg.max_waiting})"
                    )
                req.rid = client.key(rid)
                self.core.add_request(req)
            except (ValueError, WorkerGone) as exc:
                self.refuse(client, rid, str(exc), len(req.input_ids))
                continue
            client.rids.add(rid)
            self.metrics.prompt_tokens.inc(len(req.input_ids))
        self._wake.set()

    def refuse(
        self,
        client: ClientStream,
        rid: str,
        message: str,
        prompt_tokens: int = 0,
        retry_elsewhere: bool = False,
    ) -> None:
        """End ``rid`` at once with an ERROR naming why (a bad field, the worker is down, or a
        drain: then ``retry_elsewhere`` lets the front door send it to another engine)."""
        reason = FinishReason.error(message, retry_elsewhere)
        event = RequestOutput(rid, [], finish_reason=reason, prompt_tokens=prompt_tokens)
        client.outbox.put_nowait(Outputs(0, [event]))

    def abort(self, client: ClientStream, rids: list[str]) -> None:
        for rid in rids:
            if rid in client.rids:
                if self.core is not None:
                    self.core.abort(client.key(rid))
                client.rids.discard(rid)
        self._wake.set()

    def stats(self) -> LoadStats:
        return self.core.stats() if self.core is not None else IDLE_STATS

    # -- drain (SIGTERM) --------------------------------------------------------------------
    async def start_drain(self) -> None:
        """Readiness NOT_SERVING for good and new requests refused; running ones go on."""
        await self._set_ready(False)
        self.draining = True

    @property
    def has_work(self) -> bool:
        """Requests still queued or running, or a step still in flight."""
        return self.core is not None and (self.core.has_work or bool(self._in_flight))

    def end_all(self, message: str) -> int:
        """Ends every live request with an ERROR ``message`` (the loop must be stopped first);
        returns how many there were."""
        if self.core is None:
            return 0
        self._in_flight.clear()
        events = self.core.fail_all(message)
        self._dispatch(0, events)
        self._update_gauges()
        return len(events)

    async def close_clients(self, timeout: float) -> None:
        """Ends every tokenizer stream after what its outbox holds (None closes the stream),
        waiting up to ``timeout`` seconds for the streams to go."""
        for client in self.clients.values():
            client.outbox.put_nowait(None)
        await wait_while(lambda: self.clients, timeout)

    # -- worker side ------------------------------------------------------------------------
    async def connect(self, timeout: float) -> ModelInfo:
        """Wait for the worker, read its info and build a fresh core sized from it."""
        await self.worker.wait_ready(timeout)
        info = await self.worker.get_info()
        core = self.make_core(info)
        self.core = core
        self._worker_info = info
        # NOTE: a request longer than the KV pool can never run, so clients see that limit.
        self.info = replace(info, max_context_len=core.max_request_len)
        logger.info("worker connected", extra={"kv": {"slots": info.num_slots}})
        return info

    async def run(self) -> None:
        """Runs steps until cancelled; after a worker failure, reconnects and starts over."""
        backoff = self.cfg.reconnect_min
        while True:
            if self.core is None:
                try:
                    await self.connect(self.cfg.ready_timeout)
                except Exception as exc:  # noqa: BLE001 - any failure: try again later
                    logger.warning("worker still unavailable", extra={"kv": {"err": str(exc)}})
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.cfg.reconnect_max)
                    continue
            backoff = self.cfg.reconnect_min
            assert self.core is not None  # NOTE: connect() built it (or the loop went round)
            stream = self.worker.open_stream()
            await self._set_ready(True)
            watch = asyncio.create_task(self._watch_worker(), name="worker-probe")
            try:
                await self._drive(self.core, stream)
            except StepRejected as exc:
                self._new_session(str(exc))
            except Exception as exc:  # noqa: BLE001 - supervision: every failure is handled
                self._worker_lost(exc)
                await self._set_ready(False)
            finally:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
                stream.close()

    async def _watch_worker(self) -> None:
        """While connected: a worker that does not answer within ``probe_timeout`` (stopped,
        hung, its event loop blocked) makes readiness NOT_SERVING until it answers again; the
        stream stays (a step in flight still has ``step_timeout``)."""
        answers = getattr(self.worker, "answers", None)
        if not self.cfg.probe_timeout or answers is None:
            return
        hung = False
        while True:
            await asyncio.sleep(self.cfg.probe_every)
            ok = await answers(self.cfg.probe_timeout)
            if ok == hung:  # a change either way
                hung = not ok
                level = logging.ERROR if hung else logging.INFO
                logger.log(level, "worker " + ("not answering" if hung else "answers again"))
                self.down_reason = f"worker unavailable: no answer in {self.cfg.probe_timeout:g} s"
                await self._set_ready(ok)

    async def _drive(self, core: Scheduler, stream: StepStream) -> None:
        self._in_flight.clear()
        while True:
            step = None
            if len(self._in_flight) < MAX_IN_FLIGHT:
                start = time.perf_counter()
                step = core.next_step()
                if step is not None:
                    self.metrics.schedule_seconds.observe(time.perf_counter() - start)
                    self.metrics.observe_step(step)
                    self._in_flight.append(step.step_id)
                    await stream.send(step)
            if step is not None and len(self._in_flight) < MAX_IN_FLIGHT:
                continue  # overlap: queue the next step before waiting for this one
            if not self._in_flight:
                self._update_gauges()
                await self._idle(core, stream)
                continue
            try:
                # NOTE: asyncio.timeout arms a timer; wait_for would make a task per step.
                async with asyncio.timeout(self.cfg.step_timeout):
                    result = await stream.recv()
            except TimeoutError as exc:
                raise WorkerGone(
                    f"no result for step {self._in_flight[0]} in {self.cfg.step_timeout:g} s"
                ) from exc
            self._on_result(core, self._in_flight.popleft(), result)

    async def _idle(self, core: Scheduler, stream: StepStream) -> None:
        """Wait for new work; a stream that ends meanwhile is noticed at once."""
        if core.has_work:
            logger.warning("work left but nothing to schedule; waiting for an event")
        self._wake.clear()
        wake = asyncio.ensure_future(self._wake.wait())
        recv = asyncio.ensure_future(stream.recv())
        try:
            await asyncio.wait({wake, recv}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            recv.cancel()
        if recv.done() and not recv.cancelled():
            recv.result()  # raises WorkerGone when the stream ended
            raise WorkerGone("the worker sent a result for no step")

    def _on_result(self, core: Scheduler, step_id: int, result: StepOutput | StepFailed) -> None:
        now = time.perf_counter()
        self.metrics.step_seconds.observe(now - self._last_result)
        self._last_result = now
        if isinstance(result, StepFailed):
            logger.error("step rejected", extra={"kv": {"step": step_id, "err": result.error}})
            raise StepRejected(f"worker step failed: {result.error}")
        self._dispatch(step_id, core.on_result(result))
        self._update_gauges()

    def _new_session(self, message: str) -> None:
        """End every live request with ``message`` and start over on a fresh core."""
        assert self._worker_info is not None  # NOTE: a step was rejected, so connect() ran
        core, self.core = self.core, self.make_core(self._worker_info)
        self._in_flight.clear()
        if core is not None:
            self._dispatch(0, core.fail_all(message))
        self._update_gauges()

    def _worker_lost(self, exc: BaseException) -> None:
        detail = str(exc) or type(exc).__name__
        message = f"worker unavailable: {detail}"
        logger.error("worker lost", extra={"kv": {"err": detail}})
        core, self.core = self.core, None
        self.down_reason = message
        self._in_flight.clear()
        if core is not None:
            self._dispatch(0, core.fail_all(message))
        self._update_gauges()

    async def _set_ready(self, ready: bool) -> None:
        ready = ready and not self.draining  # NOTE: a reconnect during a drain stays not ready
        if ready != self.ready:
            self.ready = ready
            if self.on_ready is not None:
                await self.on_ready(ready)

    def _dispatch(self, step_id: int, events: list[RequestOutput]) -> None:
        per_client: dict[int, list[RequestOutput]] = {}
        generated = 0
        for ev in events:
            client_id, _, rid = ev.rid.partition("/")
            client = self.clients.get(int(client_id))
            if client is None:
                continue
            ev.rid = rid  # NOTE: events are fresh per step; the tokenizer knows its own rids
            if ev.finish_reason is not None:
                client.rids.discard(rid)
                self.metrics.requests.labels(ev.finish_reason.kind.value).inc()
            generated += len(ev.token_ids)
            per_client.setdefault(client.client_id, []).append(ev)
        self.metrics.generated_tokens.inc(generated)  # once a step, not once a request
        for cid, outputs in per_client.items():
            self.clients[cid].outbox.put_nowait(Outputs(step_id, outputs))

    def _update_gauges(self) -> None:
        stats = self.stats()
        self.metrics.running.set(stats.running)
        self.metrics.waiting.set(stats.waiting)
        self.metrics.kv_usage.set(stats.kv_usage)
        self.metrics.cache_hit_rate.set(stats.cache_hit_rate)
        self.metrics.new_token_ratio.set(stats.new_token_ratio)
        if self.core is None:
            self._retractions_seen = 0  # a new core counts from zero
        elif stats.num_retractions > self._retractions_seen:
            self.metrics.retractions.inc(stats.num_retractions - self._retractions_seen)
            self._retractions_seen = stats.num_retractions
        if self.core is not None:
            self.metrics.sync(self.core, stats)
