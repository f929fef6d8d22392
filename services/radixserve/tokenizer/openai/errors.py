"""Errors as OpenAI answers them: the ``{"error": {...}}`` body and the exception -> status map.

A :class:`RequestError` carries its own status (400, 404, 429, 503) and field; pydantic's
validation errors become 400s naming the field; an engine failure is a 503.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from radixserve.common.errors import NotFound, RequestError, is_overloaded
from radixserve.tokenizer.manager import Chunk

logger = logging.getLogger(__name__)


def error_body(
    message: str, param: str | None = None, kind: str = "invalid_request_error", code: Any = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# A 429 says when to come back (as TGI and OpenAI do): a request slot frees within about a second
# under load; clients (the openai SDK among them) wait that long before they retry.
RETRY_AFTER_SECONDS = 1


def error_response(status: int, message: str, param: str | None, code: Any = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 429 else None
    return JSONResponse(error_body(message, param, kind, code), status_code=status, headers=headers)


def engine_error(chunk: Chunk) -> JSONResponse:
    """The answer to a request the engine failed before its answer was sent."""
    message = chunk.error or "the engine failed"
    if is_overloaded(message):  # the scheduler's own queue bound: try again later
        return error_response(429, message, None)
    return JSONResponse(error_body(message, kind="server_error"), status_code=503)


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    err = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ()}
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, RequestError):  # raised by a model validator: keep its field
        return error_response(cause.http_status, str(cause), cause.field)
    if err.get("type") == "json_invalid":
        detail = (err.get("ctx") or {}).get("error", "")
        return error_response(400, f"malformed JSON body: {detail}".rstrip(": "), None)
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    if err.get("type") == "extra_forbidden":
        return error_response(400, f"{param}: is not a supported parameter", param)
    if param is None and err.get("type") == "model_attributes_type":
        return error_response(400, "request body: must be a JSON object", None)
    return error_response(400, f"{param or 'request body'}: {err.get('msg')}", param)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        code = "model_not_found" if isinstance(exc, NotFound) and exc.field == "model" else None
        code = getattr(exc, "openai_code", code)  # e.g. context_length_exceeded
        return error_response(exc.http_status, str(exc), exc.field, code)

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError) -> JSONResponse:
        param = str(exc).split(":", 1)[0].split("[", 1)[0] if ":" in str(exc) else None
        return error_response(400, str(exc), param)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), None)
