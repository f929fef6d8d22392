"""ForwardStream turns every way a Forward call can end into WorkerGone (issue 10: a write on a
finished call raised InvalidStateError and killed the scheduler's loop)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from radixserve.common.types import ForwardMode, ReqInput, StepInput
from radixserve.scheduler.clients import ForwardStream
from radixserve.scheduler.engine_io import StepFailed, WorkerGone
from radixserve.v1 import worker_pb2

STEP = StepInput(0, ForwardMode.DECODE, [ReqInput(row=0, new_slots=[1])])


class FakeCall:
    """The parts of grpc.aio.StreamStreamCall that ForwardStream uses."""

    def __init__(self, responses: list[object], write_error: Exception | None = None) -> None:
        self.responses = list(responses)
        self.write_error = write_error
        self.written: list[object] = []
        self.cancelled = False

    async def write(self, msg: object) -> None:
        if self.write_error is not None:
            raise self.write_error
        self.written.append(msg)

    async def read(self) -> object:
        if not self.responses:
            await asyncio.Event().wait()  # nothing more: block like an open call
        item = self.responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def cancel(self) -> None:
        self.cancelled = True


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_results_errors_and_eof():
    async def main():
        ok = worker_pb2.ForwardResponse(step_id=0, token_ids=[5])
        bad = worker_pb2.ForwardResponse(step_id=1, error="row 3: out of range")
        call = FakeCall([ok, bad, grpc.aio.EOF])
        stream = ForwardStream(call)
        await stream.send(STEP)
        assert call.written[0].step_id == 0
        assert (await stream.recv()).token_ids == [5]
        assert await stream.recv() == StepFailed(1, "row 3: out of range")
        for _ in range(2):  # the end stays the end
            with pytest.raises(WorkerGone, match="closed the step stream"):
                await stream.recv()
        stream.close()
        assert call.cancelled

    run(main())


def test_write_on_a_finished_call_and_rpc_errors_are_worker_gone():
    async def main():
        finished = FakeCall([], asyncio.InvalidStateError("RPC already finished."))
        with pytest.raises(WorkerGone, match="has ended"):
            await ForwardStream(finished).send(STEP)
        err = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, None, None, "socket closed")
        stream = ForwardStream(FakeCall([err]))
        with pytest.raises(WorkerGone, match="UNAVAILABLE: socket closed"):
            await stream.recv()
        stream.close()

    run(main())


def test_recv_is_safe_to_cancel():
    async def main():
        call = FakeCall([])
        stream = ForwardStream(call)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await stream.recv()
        assert not call.cancelled  # cancelling recv left the call open
        stream.close()

    run(main())
