"""Observability on the HTTP front door, mounted by ``http_api.create_app`` in one call.

* an ASGI middleware that names each request's endpoint for the metrics (chat, completions),
  counts error statuses by endpoint and code, and counts open SSE streams;
* ``POST /start_profile`` and ``POST /stop_profile`` (like SGLang's), forwarded through the
  scheduler to the worker, which starts or stops a torch-profiler trace without a restart.
"""

from __future__ import annotations

import logging
from typing import Any

from services.tokenizer.metrics import ENDPOINT, TokenizerMetrics

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


def mount(app: Any, metrics: TokenizerMetrics, frontend: object = None) -> None:
    """Installs the metrics middleware and the profiling routes on the FastAPI ``app``."""
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
