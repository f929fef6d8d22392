"""The tokenizer's link to its scheduler: one multiplexed Connect stream, plus unary calls."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import grpc

from radixserve.v1 import scheduler_pb2, scheduler_pb2_grpc
from services.common import pbconv
from services.common.grpc_util import require_address, wait_until_ready
from services.common.server import GRPC_OPTIONS
from services.common.types import ModelInfo
from services.tokenizer.manager import SchedOutput
from services.tokenizer.prompts import GenerateInput

logger = logging.getLogger(__name__)


def _output_from_pb(pb: scheduler_pb2.RequestOutput) -> SchedOutput:
    return SchedOutput(
        rid=pb.rid,
        token_ids=list(pb.token_ids),
        logprobs=list(pb.logprobs) or None,
        top_logprobs=[pbconv.top_logprobs_from_pb(t) for t in pb.top_logprobs] or None,
        finish_reason=pbconv.finish_reason_from_pb(pb.finish_reason),
        matched_stop_token=pb.matched_stop_token if pb.matched_stop_token >= 0 else None,
        prompt_tokens=pb.usage.prompt_tokens,
        completion_tokens=pb.usage.completion_tokens,
        cached_tokens=pb.usage.cached_tokens,
        error=pb.error,
    )


def _request_to_pb(req: GenerateInput) -> scheduler_pb2.SchedRequest:
    return scheduler_pb2.SchedRequest(
        rid=req.rid,
        input_ids=req.input_ids,
        sampling=pbconv.sampling_to_pb(req.sampling),
        priority=req.priority,
    )


class OutputSink(Protocol):
    """Where a link delivers its stream's outputs (the manager, or the pool on its behalf)."""

    def on_outputs(self, outputs: list[SchedOutput]) -> None: ...
    def fail_all(self, message: str) -> None: ...


class SchedulerLink:
    """Implements the manager's ``Upstream`` over one Connect stream.

    Adds and aborts queued in the same event-loop turn travel in one message.
    """

    def __init__(self, address: str, name: str) -> None:
        self.address = require_address(address, "scheduler")
        self.name = name
        self.channel = grpc.aio.insecure_channel(self.address, options=GRPC_OPTIONS)
        self.stub = scheduler_pb2_grpc.SchedulerServiceStub(self.channel)
        self._outbox: asyncio.Queue[scheduler_pb2.ConnectRequest] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def wait_ready(self, timeout: float) -> None:
        await wait_until_ready(self.channel, f"scheduler at {self.address}", timeout)

    async def get_engine_info(self, timeout: float = 10.0) -> ModelInfo:
        resp = await self.stub.GetEngineInfo(scheduler_pb2.GetEngineInfoRequest(), timeout=timeout)
        return pbconv.model_info_from_pb(resp.info)

    async def get_load(self, timeout: float = 5.0) -> scheduler_pb2.GetLoadResponse:
        return await self.stub.GetLoad(scheduler_pb2.GetLoadRequest(), timeout=timeout)

    def add(self, reqs: list[GenerateInput]) -> None:
        msg = scheduler_pb2.ConnectRequest(
            add=scheduler_pb2.AddRequests(requests=[_request_to_pb(r) for r in reqs])
        )
        self._outbox.put_nowait(msg)

    def abort(self, rids: list[str]) -> None:
        msg = scheduler_pb2.ConnectRequest(abort=scheduler_pb2.AbortRequests(rids=rids))
        self._outbox.put_nowait(msg)

    def start(self, manager: OutputSink) -> None:
        self._task = asyncio.create_task(self._run(manager), name="scheduler-link")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.channel.close()

    async def _run(self, manager: OutputSink) -> None:
        """Keeps one Connect stream open; when it breaks, running requests fail and it reopens."""
        while True:
            call = self.stub.Connect()
            writer = asyncio.create_task(self._write(call))
            try:
                async for resp in call:
                    manager.on_outputs([_output_from_pb(o) for o in resp.outputs])
                reason = "scheduler closed the stream"
            except grpc.aio.AioRpcError as exc:
                reason = f"scheduler unavailable: {exc.code().name}"
            finally:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
            logger.error("scheduler link down", extra={"kv": {"reason": reason}})
            manager.fail_all(reason)
            await asyncio.sleep(0.5)

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:
        await call.write(
            scheduler_pb2.ConnectRequest(hello=scheduler_pb2.Hello(client_name=self.name))
        )
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
