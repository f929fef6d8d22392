"""Errors that cross service boundaries. No grpc here: servers map ``code`` to a status."""

from __future__ import annotations


class RequestError(Exception):
    """A request failed for a reason a client should see.

    ``code`` names the ``grpc.StatusCode`` and ``http_status`` the HTTP status of the failure.
    """

    code = "INTERNAL"
    http_status = 500

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class InvalidArgument(RequestError, ValueError):
    code = "INVALID_ARGUMENT"
    http_status = 400


class Overloaded(RequestError):
    """Too much work in flight: try again later (TGI and vLLM answer 429 too)."""

    code = "RESOURCE_EXHAUSTED"
    http_status = 429


# The start of the error a scheduler ends a request with when its own queue is full (issue 23):
# the front door answers it as Overloaded (429 / RESOURCE_EXHAUSTED), not as a failed engine.
SCHEDULER_OVERLOADED = "scheduler overloaded"


def is_overloaded(error: str) -> bool:
    return error.startswith(SCHEDULER_OVERLOADED)


class Unavailable(RequestError):
    code = "UNAVAILABLE"
    http_status = 503


class NotFound(RequestError):
    code = "NOT_FOUND"
    http_status = 404
