"""Errors that cross service boundaries, and their gRPC status codes."""

from __future__ import annotations

import grpc


class RequestError(Exception):
    """A request failed for a reason a client should see; ``code`` is the gRPC status."""

    code = grpc.StatusCode.INTERNAL
    http_status = 500

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class InvalidArgument(RequestError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class Overloaded(RequestError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 503


class Unavailable(RequestError):
    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


async def abort_with(context: object, exc: RequestError) -> None:
    """Ends a grpc.aio call with ``exc``'s status code and message."""
    await context.abort(exc.code, str(exc))  # type: ignore[attr-defined]
