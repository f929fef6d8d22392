"""The gRPC metrics interceptor on a real server: unary, generator-streaming and context.write
streaming handlers keep working, and each call is counted with its status code."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from prometheus_client import CollectorRegistry

from radixserve.common.interceptors import MetricsInterceptor

HEALTH = "grpc.health.v1.Health"


async def _exercise(registry: CollectorRegistry) -> None:
    server = grpc.aio.server(interceptors=[MetricsInterceptor(registry)])
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await health.set("ok", health_pb2.HealthCheckResponse.SERVING)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest(service="ok"))
            try:
                await stub.Check(health_pb2.HealthCheckRequest(service="missing"))
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
            watch = stub.Watch(health_pb2.HealthCheckRequest(service="ok"))
            first = await watch.read()  # Watch writes through context.write
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()
            await asyncio.sleep(0.2)
    finally:
        await server.stop(0)


def test_interceptor_counts_calls_by_code():
    registry = CollectorRegistry()
    asyncio.run(_exercise(registry))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"grpc_service": HEALTH, **labels})

    check = {"grpc_method": "Check", "grpc_type": "unary"}
    assert value("grpc_server_started_total", **check) == 2
    assert value("grpc_server_handled_total", grpc_code="OK", **check) == 1
    assert value("grpc_server_handled_total", grpc_code="NOT_FOUND", **check) == 1
    assert value("grpc_server_handling_seconds_count", **check) == 2
    watch = {"grpc_method": "Watch", "grpc_type": "server_stream"}
    assert value("grpc_server_started_total", **watch) == 1
    assert value("grpc_server_handled_total", grpc_code="CANCELLED", **watch) == 1
