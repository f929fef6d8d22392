"""Server interceptors shared by every service: DEBUG logging of unary calls, gRPC metrics."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from radixserve.common.metrics import LATENCY_BUCKETS

logger = logging.getLogger(__name__)


class LoggingInterceptor(grpc.aio.ServerInterceptor):
    """Logs each unary call at DEBUG with its duration; streams are logged by their handlers."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or not logger.isEnabledFor(logging.DEBUG):
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method

        async def logged(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            try:
                return await inner(request, context)
            finally:
                ms = (time.perf_counter() - start) * 1e3
                logger.debug("rpc", extra={"kv": {"method": method, "ms": f"{ms:.2f}"}})

        return grpc.unary_unary_rpc_method_handler(
            logged,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


_TYPES = {
    "unary_unary": "unary",
    "unary_stream": "server_stream",
    "stream_unary": "client_stream",
    "stream_stream": "bidi_stream",
}


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """gRPC server metrics of every call, with go-grpc-prometheus' names: calls started,
    calls handled by status code, and handling time (until the last response message)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_service", "grpc_method", "grpc_type"]
        self.started = Counter(
            "grpc_server_started", "RPCs started on the server", labels, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by status code",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the call's start to its status",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        kind = next(k for k in _TYPES if getattr(handler, k) is not None)
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        labels = (service, method, _TYPES[kind])
        wrap = _wrap_stream if handler.response_streaming else _wrap_unary
        inner = wrap(getattr(handler, kind), self, labels)
        return getattr(grpc, f"{kind}_rpc_method_handler")(
            inner,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def begin(self, labels: tuple[str, str, str]) -> float:
        self.started.labels(*labels).inc()
        return time.perf_counter()

    def end(
        self,
        labels: tuple[str, str, str],
        start: float,
        context: grpc.aio.ServicerContext,
        exc: BaseException | None,
    ) -> None:
        self.seconds.labels(*labels).observe(time.perf_counter() - start)
        self.handled.labels(*labels, _status(context, exc).name).inc()


def _status(context: grpc.aio.ServicerContext, exc: BaseException | None) -> grpc.StatusCode:
    """The call's status: what the handler set (abort sets it too), else from how it ended."""
    code = context.code()
    if isinstance(code, int):  # grpc.aio reports the raw cygrpc value
        code = _BY_VALUE.get(code, grpc.StatusCode.UNKNOWN)
    if code is not None:
        return code
    if exc is None:
        return grpc.StatusCode.OK
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


def _wrap_unary(inner: Callable, m: MetricsInterceptor, labels: tuple[str, str, str]) -> Callable:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        start, exc = m.begin(labels), None
        try:
            return await inner(request, context)
        except BaseException as e:
            exc = e
            raise
        finally:
            m.end(labels, start, context, exc)

    return call


def _wrap_stream(inner: Callable, m: MetricsInterceptor, labels: tuple[str, str, str]) -> Callable:
    if not inspect.isasyncgenfunction(inner):
        # A handler that writes through context.write (grpc_health's Watch) stays a coroutine:
        # grpc.aio refuses a generator handler that also writes through the context.
        return _wrap_unary(inner, m, labels)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        start, exc = m.begin(labels), None
        try:
            async for item in inner(request, context):
                yield item
        except BaseException as e:
            exc = e
            raise
        finally:
            m.end(labels, start, context, exc)

    return stream
