"""Observability on the HTTP front door, mounted by ``openai.routes.create_app`` in one call.

* an ASGI middleware that names each request's endpoint for the metrics (chat, completions),
  counts error statuses by endpoint and code, and counts open SSE streams;
* ``POST /start_profile`` and ``POST /stop_profile`` (like SGLang's), forwarded through the
  scheduler to the worker, which starts or stops a torch-profiler trace without a restart.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from radixserve.tokenizer.metrics import ENDPOINT, TokenizerMetrics
from radixserve.v1 import scheduler_pb2, worker_pb2

logger = logging.getLogger(__name__)

_ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}


class _MetricsMiddleware:
    def __init__(self, app: Any, metrics: TokenizerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = _ENDPOINTS.get(scope["path"], "other")
        token = ENDPOINT.set(endpoint)
        opened = False

        async def counting_send(message: dict) -> None:
            nonlocal opened
            if message["type"] == "http.response.start":
                status = message["status"]
                if status >= 400:
                    self.metrics.errors.labels(endpoint, str(status)).inc()
                headers = dict(message.get("headers") or [])
                if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
                    opened = True
                    self.metrics.open_streams.labels(endpoint).inc()
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if opened:
                self.metrics.open_streams.labels(endpoint).dec()
            ENDPOINT.reset(token)


class ProfileBody(BaseModel):
    """Body of ``POST /start_profile`` (all optional)."""

    model_config = ConfigDict(extra="forbid")
    output_dir: str = ""  # a plain name under the worker's --profile-dir (empty: that dir)
    num_steps: int = Field(0, ge=0)  # stop by itself after this many steps (0: on /stop_profile)
    record_shapes: bool = False


_HTTP = {
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
}


def _links(frontend: Any) -> list[Any]:
    """The scheduler links of the tokenizer's pool (one per engine)."""
    return list(getattr(frontend.manager.upstream, "links", []))


async def _each_engine(frontend: Any, call: Any) -> JSONResponse:
    engines = []
    for link in _links(frontend):
        try:
            engines.append({"address": link.address, **await call(link.stub)})
        except grpc.aio.AioRpcError as exc:
            status = _HTTP.get(exc.code(), 500)
            message = f"scheduler {link.address}: {exc.details()}"
            return JSONResponse({"error": {"message": message, "code": status}}, status)
    return JSONResponse({"engines": engines})


_NO_ADMIN = (
    "profiling is an admin endpoint: start the server with an API key (--api-key-file, "
    "RADIXSERVE_API_KEY) and send it"
)


def _router(frontend: Any, admin: bool) -> APIRouter:
    """The profiling routes; ``admin``: the API key guards them (else they answer 403)."""
    router = APIRouter()

    @router.post("/start_profile")
    async def start_profile(body: ProfileBody | None = None) -> JSONResponse:
        if not admin:
            return JSONResponse({"error": {"message": _NO_ADMIN, "code": 403}}, 403)
        body = body or ProfileBody()
        profile = worker_pb2.StartProfileRequest(
            output_dir=body.output_dir, num_steps=body.num_steps, record_shapes=body.record_shapes
        )

        async def call(stub: Any) -> dict:
            req = scheduler_pb2.StartEngineProfileRequest(profile=profile)
            resp = await stub.StartEngineProfile(req, timeout=120)
            return {"output_dir": resp.profile.output_dir}

        return await _each_engine(frontend, call)

    @router.post("/stop_profile")
    async def stop_profile() -> JSONResponse:
        if not admin:
            return JSONResponse({"error": {"message": _NO_ADMIN, "code": 403}}, 403)

        async def call(stub: Any) -> dict:
            req = scheduler_pb2.StopEngineProfileRequest()
            resp = await stub.StopEngineProfile(req, timeout=120)
            return {"trace_path": resp.profile.trace_path, "num_steps": resp.profile.num_steps}

        return await _each_engine(frontend, call)

    return router


def mount(
    app: Any, metrics: TokenizerMetrics, frontend: object = None, admin: bool = False
) -> None:
    """Installs the metrics middleware and the profiling routes on the FastAPI ``app``
    (``admin``: an API key guards the app; without one profiling answers 403, issue 23)."""
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    if frontend is not None:
        app.include_router(_router(frontend, admin))
