"""Server interceptors shared by every service."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

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
