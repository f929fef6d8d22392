"""Small helpers for grpc.aio servicers and clients."""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from radixserve.common.errors import RequestError

logger = logging.getLogger(__name__)


def status_code(exc: RequestError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, exc.code)


async def abort_with(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    """Ends the call: RequestError keeps its code, ValueError is INVALID_ARGUMENT."""
    if isinstance(exc, RequestError):
        await context.abort(status_code(exc), str(exc))
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))


def require_address(address: str, what: str) -> str:
    if not address:
        raise ValueError(f"{what} address is not set")
    return address


async def wait_until_ready(
    channel: grpc.aio.Channel, what: str, timeout: float, service: str = "readiness"
) -> None:
    """Polls the peer's health ``readiness`` until SERVING or ``timeout`` seconds pass."""
    stub = health_pb2_grpc.HealthStub(channel)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no answer"
    while loop.time() < deadline:
        try:
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2.0)
            if resp.status == health_pb2.HealthCheckResponse.SERVING:
                return
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
        except grpc.aio.AioRpcError as exc:
            last = exc.code().name
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s (last: {last})")
