"""The tokenizer's link to its scheduler: one multiplexed Connect stream, plus unary calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from radixserve.common.errors import InvalidArgument, Unavailable
from radixserve.common.grpc_util import require_address, wait_until_ready
from radixserve.common.outputs import RequestOutput
from radixserve.common.security import make_channel
from radixserve.common.types import ModelInfo
from radixserve.common.wire.common import model_info_from_pb
from radixserve.common.wire.scheduler import abort_to_pb, add_to_pb, hello_to_pb, outputs_from_pb
from radixserve.tokenizer.prompts import GenerateInput
from radixserve.v1 import scheduler_pb2, scheduler_pb2_grpc

logger = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 5.0
# Readiness checks in a row that get no answer before the link counts the scheduler as hung
# (NOT_SERVING): one late answer is a busy machine, two (about 2 x (5 + 1) s) a stopped peer.
PROBE_MISSES = 2


class OutputSink(Protocol):
    """Where a link delivers its stream's outputs (the manager, or the pool on its behalf)."""

    def on_outputs(self, outputs: list[RequestOutput]) -> None: ...
    def fail_all(self, message: str) -> None: ...


def encode_add(reqs: list[GenerateInput]) -> scheduler_pb2.ConnectRequest:
    """The Connect message for ``reqs``; InvalidArgument when a value does not fit the wire
    format (e.g. top_k or a stop token id >= 2**31 from the HTTP API)."""
    try:
        return add_to_pb(reqs)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"out of range: {exc}", _bad_int_field(reqs[0])) from exc


def _bad_int_field(req: GenerateInput) -> str:
    sp = req.sampling
    if not -(2**31) <= sp.top_k < 2**31:
        return "top_k"
    if any(not -(2**31) <= t < 2**31 for t in sp.stop_token_ids):
        return "stop_token_ids"
    if not -(2**31) <= sp.max_new_tokens < 2**31:
        return "max_tokens"
    return "sampling"


class SchedulerLink:
    """Implements the manager's ``Upstream`` over one Connect stream.

    Adds and aborts queued in the same event-loop turn travel in one message. The link reopens
    the stream by itself when the scheduler returns; :attr:`ready` says whether the stream is open
    and the scheduler's own readiness is SERVING (polled every ``probe_seconds``).

    NOTE: while the stream is down :meth:`add` raises Unavailable and nothing is queued, and each
    new stream starts with an empty outbox: a request whose client already got an error never
    runs later (no ghost requests).
    """

    def __init__(self, address: str, name: str, probe_seconds: float = 1.0) -> None:
        self.address = require_address(address, "scheduler")
        self.name = name
        self.probe_seconds = probe_seconds
        self.channel = make_channel(self.address)
        self.stub = scheduler_pb2_grpc.SchedulerServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self._outbox: asyncio.Queue[scheduler_pb2.ConnectRequest] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self.up = False  # the Connect stream is open
        self.serving = False  # the scheduler's readiness, as last probed
        self.down_reason = "not connected yet"
        self.on_change: Callable[[], None] = lambda: None

    @property
    def ready(self) -> bool:
        return self.up and self.serving

    async def wait_ready(self, timeout: float) -> None:
        await wait_until_ready(self.channel, f"scheduler at {self.address}", timeout)

    async def get_engine_info(self, timeout: float = 10.0) -> ModelInfo:
        resp = await self.stub.GetEngineInfo(scheduler_pb2.GetEngineInfoRequest(), timeout=timeout)
        return model_info_from_pb(resp.info)

    async def get_load(self, timeout: float = 5.0) -> scheduler_pb2.GetLoadResponse:
        return await self.stub.GetLoad(scheduler_pb2.GetLoadRequest(), timeout=timeout)

    def add(self, reqs: list[GenerateInput]) -> None:
        msg = encode_add(reqs)
        if not self.up:
            raise Unavailable(f"scheduler at {self.address} unavailable: {self.down_reason}")
        self._outbox.put_nowait(msg)

    def abort(self, rids: list[str]) -> None:
        if not self.up:
            return  # the scheduler dropped the stream's requests with it
        self._outbox.put_nowait(abort_to_pb(rids))

    def start(self, manager: OutputSink) -> None:
        self._task = asyncio.create_task(self._run(manager), name="scheduler-link")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.channel.close()

    def refused_draining(self) -> None:
        """The scheduler refused a request because it drains: not ready until a probe (or a
        new stream, after a restart) says it serves again."""
        self._set(serving=False)

    def _set(self, up: bool | None = None, serving: bool | None = None) -> None:
        before = self.ready
        self.up = self.up if up is None else up
        self.serving = self.serving if serving is None else serving
        if self.ready != before:
            logger.warning(
                "scheduler link " + ("ready" if self.ready else "not ready"),
                extra={"kv": {"scheduler": self.address, "reason": self.down_reason}},
            )
            self.on_change()

    async def _run(self, manager: OutputSink) -> None:
        """Keeps one Connect stream open; when it breaks, running requests fail and it reopens."""
        while True:
            await self._until_serving()
            reason = await self._serve_stream(manager)
            self.down_reason = reason
            self._set(up=False, serving=False)
            self._outbox = asyncio.Queue()  # NOTE: queued adds belong to failed requests
            logger.error("scheduler link down", extra={"kv": {"reason": reason}})
            manager.fail_all(reason)
            await asyncio.sleep(0.2)

    async def _serve_stream(self, manager: OutputSink) -> str:
        """Runs one Connect stream until it ends; returns why it ended."""
        call = self.stub.Connect()
        writer: asyncio.Task | None = None
        prober: asyncio.Task | None = None
        try:
            await call.write(hello_to_pb(self.name))
            self._set(up=True, serving=True)
            writer = asyncio.create_task(self._write(call))
            prober = asyncio.create_task(self._probe())
            async for resp in call:
                manager.on_outputs(outputs_from_pb(resp))
            return "scheduler unavailable: it closed the stream"
        except grpc.aio.AioRpcError as exc:
            return f"scheduler unavailable: {exc.code().name} {exc.details() or ''}".rstrip()
        except (grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            return f"scheduler unavailable: {exc!r}"
        finally:
            for task in (writer, prober):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            call.cancel()

    async def _until_serving(self) -> None:
        """Waits (forever) until the scheduler answers readiness SERVING."""
        while not await self._check():
            await asyncio.sleep(self.probe_seconds / 2)

    async def _check(self) -> bool | None:
        """The scheduler's readiness; None when it did not answer in time (a busy scheduler,
        or a busy machine, is not a down one: the open stream says more)."""
        req = health_pb2.HealthCheckRequest(service="readiness")
        try:
            resp = await self.health.Check(req, timeout=PROBE_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return None
            self.down_reason = f"scheduler unavailable: {exc.code().name}"
            return False
        if resp.status != health_pb2.HealthCheckResponse.SERVING:
            self.down_reason = "scheduler not ready"
            return False
        return True

    async def _probe(self) -> None:
        """While the stream is open, follows the scheduler's readiness (its worker may be down);
        ``PROBE_MISSES`` checks in a row without an answer count as NOT_SERVING (a hang)."""
        misses = 0
        while True:
            await asyncio.sleep(self.probe_seconds)
            serving = await self._check()
            misses = misses + 1 if serving is None else 0
            if serving is None and misses >= PROBE_MISSES:
                self.down_reason = f"scheduler unavailable: no answer in {PROBE_TIMEOUT_S:g} s"
                serving = False
            if serving is not None:
                self._set(serving=serving)

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            msg = await self._outbox.get()
            msg = self._merge_queued(msg)
            await call.write(msg)

    def _merge_queued(self, msg: scheduler_pb2.ConnectRequest) -> scheduler_pb2.ConnectRequest:
        """Folds queued messages of the same kind into ``msg`` (one write per turn)."""
        kind = msg.WhichOneof("kind")
        while not self._outbox.empty():
            nxt = self._outbox._queue[0]  # type: ignore[attr-defined]
            if nxt.WhichOneof("kind") != kind:
                break
            self._outbox.get_nowait()
            if kind == "add":
                msg.add.requests.extend(nxt.add.requests)
            else:
                msg.abort.rids.extend(nxt.abort.rids)
        return msg
