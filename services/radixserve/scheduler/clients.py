"""Calls from the scheduler to its worker (the conversions are common/wire/worker.py's)."""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from radixserve.common.grpc_util import require_address, wait_until_ready
from radixserve.common.security import make_channel
from radixserve.common.types import ModelInfo, StepInput, StepOutput
from radixserve.common.wire import worker as wire
from radixserve.common.wire.common import model_info_from_pb
from radixserve.scheduler.engine_io import StepFailed, WorkerGone
from radixserve.v1 import worker_pb2, worker_pb2_grpc

logger = logging.getLogger(__name__)

# NOTE: gRPC's default reconnect backoff grows to 120 s; a restarted worker must be found in
# seconds (issue 10), so the channel retries at most every 2 s.
_RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class WorkerClient:
    """The scheduler's link to worker rank 0: model info and the Forward stream."""

    def __init__(self, address: str) -> None:
        self.address = require_address(address, "worker")
        self.channel = make_channel(self.address, extra_options=_RECONNECT_OPTIONS)
        self.stub = worker_pb2_grpc.WorkerServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    async def wait_ready(self, timeout: float) -> None:
        await wait_until_ready(self.channel, f"worker at {self.address}", timeout)

    async def get_info(self, timeout: float = 10.0) -> ModelInfo:
        resp = await self.stub.GetWorkerInfo(worker_pb2.GetWorkerInfoRequest(), timeout=timeout)
        return model_info_from_pb(resp.info)

    async def answers(self, timeout: float) -> bool:
        """Whether the worker process answers its liveness check within ``timeout`` (a stopped
        or hung worker does not; a draining one still does)."""
        req = health_pb2.HealthCheckRequest(service="liveness")
        try:
            await self.health.Check(req, timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return True

    def open_stream(self) -> ForwardStream:
        """The step stream; it lives as long as the worker session, so it has no deadline."""
        return ForwardStream(self.stub.Forward())

    async def close(self) -> None:
        await self.channel.close()


class ForwardStream:
    """One Forward call as a StepStream: a reader task turns responses (or the end of the
    call) into domain results, so ``recv`` is safe to cancel and a dead stream is seen even
    while no step is in flight."""

    def __init__(self, call: grpc.aio.StreamStreamCall) -> None:
        self._call = call
        self._results: asyncio.Queue[StepOutput | StepFailed | WorkerGone] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(), name="forward-reader")

    async def _read(self) -> None:
        try:
            while True:
                resp = await self._call.read()
                if resp is grpc.aio.EOF:
                    raise WorkerGone("the worker closed the step stream")
                if resp.error:
                    self._results.put_nowait(StepFailed(resp.step_id, resp.error))
                else:
                    self._results.put_nowait(wire.output_from_pb(resp))
        except WorkerGone as exc:
            self._results.put_nowait(exc)
        except grpc.aio.AioRpcError as exc:
            self._results.put_nowait(WorkerGone(f"{exc.code().name}: {exc.details()}"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any other end of the call is the same loss
            self._results.put_nowait(WorkerGone(f"step stream failed: {exc!r}"))

    async def send(self, step: StepInput) -> None:
        try:
            await self._call.write(wire.step_to_pb(step))
        except grpc.aio.AioRpcError as exc:
            raise WorkerGone(f"{exc.code().name}: {exc.details()}") from exc
        except asyncio.InvalidStateError as exc:  # a write on a call that already ended
            raise WorkerGone("the step stream has ended") from exc

    async def recv(self) -> StepOutput | StepFailed:
        item = await self._results.get()
        if isinstance(item, WorkerGone):
            self._results.put_nowait(item)  # the stream stays dead for later calls
            raise item
        return item

    def close(self) -> None:
        self._reader.cancel()
        self._call.cancel()
