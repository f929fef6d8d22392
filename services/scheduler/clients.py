"""Calls from the scheduler to its worker."""

from __future__ import annotations

import grpc

from radixserve.v1 import worker_pb2, worker_pb2_grpc
from services.common import pbconv
from services.common.grpc_util import require_address, wait_until_ready
from services.common.security import make_channel
from services.common.types import ModelInfo


class WorkerClient:
    """The scheduler's link to worker rank 0: model info and the Forward stream."""

    def __init__(self, address: str) -> None:
        self.address = require_address(address, "worker")
        self.channel = make_channel(self.address)
        self.stub = worker_pb2_grpc.WorkerServiceStub(self.channel)

    async def wait_ready(self, timeout: float) -> None:
        await wait_until_ready(self.channel, f"worker at {self.address}", timeout)

    async def get_info(self, timeout: float = 10.0) -> ModelInfo:
        resp = await self.stub.GetWorkerInfo(worker_pb2.GetWorkerInfoRequest(), timeout=timeout)
        return pbconv.model_info_from_pb(resp.info)

    def open_forward(self) -> grpc.aio.StreamStreamCall:
        """The step stream; it lives as long as the scheduler, so it has no deadline."""
        return self.stub.Forward()

    async def close(self) -> None:
        await self.channel.close()
