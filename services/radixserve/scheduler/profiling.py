"""SchedulerService.StartEngineProfile / StopEngineProfile: the admin profiling RPCs, forwarded
to this engine's worker (WorkerService.StartProfile / StopProfile). Mixed into the servicer."""

from __future__ import annotations

import logging
from typing import Any

import grpc

from radixserve.v1 import scheduler_pb2, worker_pb2

logger = logging.getLogger(__name__)
TIMEOUT = 120.0  # writing a long trace takes a while


class EngineProfileRPCs:
    loop: Any  # the servicer's EngineLoop (None until attached); its ``worker`` is the client

    async def _worker_stub(self, context: grpc.aio.ServicerContext) -> Any:
        worker = getattr(getattr(self, "loop", None), "worker", None)
        if worker is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scheduler is still starting")
        assert worker is not None  # NOTE: context.abort raises
        return worker.stub

    async def StartEngineProfile(
        self, request: scheduler_pb2.StartEngineProfileRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.StartEngineProfileResponse:
        stub = await self._worker_stub(context)
        try:
            resp = await stub.StartProfile(request.profile, timeout=TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), f"worker: {exc.details()}")
        return scheduler_pb2.StartEngineProfileResponse(profile=resp)

    async def StopEngineProfile(
        self, request: scheduler_pb2.StopEngineProfileRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.StopEngineProfileResponse:
        stub = await self._worker_stub(context)
        try:
            resp = await stub.StopProfile(worker_pb2.StopProfileRequest(), timeout=TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), f"worker: {exc.details()}")
        return scheduler_pb2.StopEngineProfileResponse(profile=resp)
