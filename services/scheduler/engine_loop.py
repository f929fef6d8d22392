"""The step loop: drives the scheduler core and the worker's Forward stream, one step ahead.

NOTE (overlap): step N+1 is built and sent before step N's result is read, so the worker always
has the next step queued while it computes. At most two steps are in flight; results come back in
order and are handed to the core, which drops requests that finished in step N from step N+2.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import grpc

from radixserve.v1 import scheduler_pb2
from services.common import pbconv
from services.common.types import StepInput
from services.scheduler.clients import WorkerClient
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.request import Request, TokenEvent

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT = 2


@dataclass
class ClientStream:
    """One tokenizer replica's Connect stream: its requests and its outbox."""

    client_id: int
    name: str = ""
    rids: set[str] = field(default_factory=set)
    outbox: asyncio.Queue = field(default_factory=asyncio.Queue)

    def key(self, rid: str) -> str:
        return f"{self.client_id}/{rid}"


class EngineLoop:
    def __init__(self, core: object, worker: WorkerClient, metrics: SchedulerMetrics) -> None:
        self.core = core
        self.worker = worker
        self.metrics = metrics
        self.clients: dict[int, ClientStream] = {}
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._in_flight: deque[StepInput] = deque()
        self._last_result = time.perf_counter()
        self._retractions_seen = 0

    # -- tokenizer side ---------------------------------------------------------------------
    def register(self) -> ClientStream:
        client = ClientStream(next(self._ids))
        self.clients[client.client_id] = client
        return client

    def unregister(self, client: ClientStream) -> None:
        """A tokenizer went away: abort all of its requests so that nothing leaks."""
        for rid in list(client.rids):
            self.core.abort(client.key(rid))
        client.rids.clear()
        self.clients.pop(client.client_id, None)
        self._wake.set()

    def add_requests(self, client: ClientStream, reqs: list[scheduler_pb2.SchedRequest]) -> None:
        errors = []
        for pb in reqs:
            try:
                if pb.rid in client.rids:
                    raise ValueError(f"rid: {pb.rid!r} is already running")
                sampling = pbconv.sampling_from_pb(pb.sampling)
                self.core.add_request(
                    Request(
                        rid=client.key(pb.rid),
                        input_ids=list(pb.input_ids),
                        sampling=sampling,
                        priority=pb.priority,
                    )
                )
                client.rids.add(pb.rid)
                self.metrics.prompt_tokens.inc(len(pb.input_ids))
            except ValueError as exc:
                errors.append(_error_output(pb.rid, str(exc)))
        if errors:
            client.outbox.put_nowait(scheduler_pb2.ConnectResponse(outputs=errors))
        self._wake.set()

    def abort(self, client: ClientStream, rids: list[str]) -> None:
        for rid in rids:
            if rid in client.rids:
                self.core.abort(client.key(rid))
                client.rids.discard(rid)
        self._wake.set()

    # -- worker side ------------------------------------------------------------------------
    async def run(self) -> None:
        """Runs steps until cancelled; reopens the worker stream after a failure."""
        while True:
            call = self.worker.open_forward()
            try:
                await self._drive(call)
            except grpc.aio.AioRpcError as exc:
                logger.error("worker stream failed", extra={"kv": {"code": exc.code().name}})
                # NOTE: the next stream starts a new worker session that knows no rows, so
                # everything running now fails rather than resuming on forgotten state.
                message = f"worker unavailable: {exc.details()}"
                self._fail_in_flight(message)
                self._dispatch(0, self.core.abort_all(message))
                await asyncio.sleep(0.5)
            finally:
                call.cancel()

    async def _drive(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            step = None
            if len(self._in_flight) < MAX_IN_FLIGHT:
                start = time.perf_counter()
                step = self.core.next_step()
                if step is not None:
                    self.metrics.schedule_seconds.observe(time.perf_counter() - start)
                    self.metrics.observe_step(step)
                    await call.write(pbconv.step_to_pb(step))
                    self._in_flight.append(step)
            if step is not None and len(self._in_flight) < MAX_IN_FLIGHT:
                continue  # overlap: queue the next step before waiting for this one
            if not self._in_flight:
                self._dispatch(0, self.core.take_events())  # e.g. requests too big to ever fit
                self._update_gauges()
                self._wake.clear()
                if not self.core.has_work:
                    await self._wake.wait()
                continue
            resp = await call.read()
            if resp is grpc.aio.EOF:
                raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, None, None, "EOF")
            self._on_result(self._in_flight.popleft(), resp)

    def _on_result(self, step: StepInput, resp: object) -> None:
        now = time.perf_counter()
        self.metrics.step_seconds.observe(now - self._last_result)
        self._last_result = now
        if resp.error:  # type: ignore[attr-defined]
            logger.error("step failed", extra={"kv": {"step": step.step_id, "err": resp.error}})
            events = self.core.fail_step(step, resp.error)  # type: ignore[attr-defined]
        else:
            events = self.core.on_result(pbconv.output_from_pb(resp))
        self._dispatch(step.step_id, events)
        self._update_gauges()

    def _fail_in_flight(self, message: str) -> None:
        while self._in_flight:
            step = self._in_flight.popleft()
            self._dispatch(step.step_id, self.core.fail_step(step, message))

    def _dispatch(self, step_id: int, events: list) -> None:
        per_client: dict[int, list[scheduler_pb2.RequestOutput]] = {}
        for ev in events:
            client_id, _, rid = ev.rid.partition("/")
            client = self.clients.get(int(client_id))
            if client is None:
                continue
            if ev.finish_reason is not None:
                client.rids.discard(rid)
                self.metrics.requests.labels(ev.finish_reason.kind.value).inc()
            self.metrics.generated_tokens.inc(len(ev.token_ids))
            per_client.setdefault(client.client_id, []).append(_event_output(rid, ev))
        for client_id, outputs in per_client.items():
            msg = scheduler_pb2.ConnectResponse(step_id=step_id, outputs=outputs)
            self.clients[client_id].outbox.put_nowait(msg)

    def _update_gauges(self) -> None:
        stats = self.core.stats()
        self.metrics.running.set(stats.running)
        self.metrics.waiting.set(stats.waiting)
        self.metrics.kv_usage.set(stats.kv_usage)
        self.metrics.cache_hit_rate.set(stats.cache_hit_rate)
        self.metrics.new_token_ratio.set(stats.new_token_ratio)
        if stats.num_retractions > self._retractions_seen:
            self.metrics.retractions.inc(stats.num_retractions - self._retractions_seen)
            self._retractions_seen = stats.num_retractions
        self.metrics.sync(self.core)


def _event_output(rid: str, ev: TokenEvent) -> scheduler_pb2.RequestOutput:
    out = scheduler_pb2.RequestOutput(
        rid=rid, token_ids=ev.token_ids, logprobs=ev.logprobs or [], matched_stop_token=-1
    )
    fr = ev.finish_reason
    if fr is not None:
        out.finish_reason = pbconv.finish_reason_to_pb(fr.kind.value)
        if fr.matched_token is not None:
            out.matched_stop_token = fr.matched_token
        out.error = fr.message if fr.kind.value != "stop" and fr.message != "aborted" else ""
    out.usage.prompt_tokens = ev.prompt_tokens
    out.usage.completion_tokens = ev.completion_tokens
    out.usage.cached_tokens = ev.cached_tokens
    if ev.top_logprobs:
        out.top_logprobs.extend(pbconv.top_logprobs_to_pb(t) for t in ev.top_logprobs)
    return out


def _error_output(rid: str, message: str) -> scheduler_pb2.RequestOutput:
    return scheduler_pb2.RequestOutput(
        rid=rid,
        finish_reason=pbconv.finish_reason_to_pb("error"),
        matched_stop_token=-1,
        error=message,
    )
