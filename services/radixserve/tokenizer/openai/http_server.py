"""The HTTP API's server: uvicorn in the tokenizer's event loop, configured from
:class:`TokenizerConfig` (body limit, API key, CORS origins, HTTP parser)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import socket

import uvicorn

from radixserve.common import security
from radixserve.tokenizer.config import TokenizerConfig
from radixserve.tokenizer.frontend import Frontend
from radixserve.tokenizer.limits import BodyLimit
from radixserve.tokenizer.metrics import TokenizerMetrics
from radixserve.tokenizer.openai.routes import create_app

logger = logging.getLogger(__name__)

HTTP_IMPLS = ("auto", "httptools", "h11")


def http_protocol(choice: str) -> str:
    """uvicorn's HTTP/1.1 implementation: ``httptools`` (C parser, several times less Python per
    SSE event than h11), ``h11`` (pure Python), or ``auto`` (httptools when installed)."""
    if choice not in HTTP_IMPLS:
        raise ValueError(f"http_impl: unknown {choice!r}, known: {', '.join(HTTP_IMPLS)}")
    if choice == "auto":
        choice = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    elif choice == "httptools" and importlib.util.find_spec("httptools") is None:
        raise ValueError("http_impl: httptools is not installed (pip install httptools)")
    return choice


class _Server(uvicorn.Server):
    """uvicorn without signal handling: the service's ``__main__`` owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


async def start_http(
    frontend: Frontend,
    metrics: TokenizerMetrics,
    host: str,
    port: int,
    cfg: TokenizerConfig | None = None,
) -> tuple[uvicorn.Server, asyncio.Task]:
    """Serves the API on ``host:port`` in the running loop; returns once it accepts connections.

    ``cfg`` (defaults: no body limit, no API key, no CORS) gives ``max_body_bytes``, ``api_key``,
    ``allowed_origins`` and ``http_impl`` (see :func:`http_protocol`); the service passes its own,
    with ``cfg.host`` and ``cfg.http_port`` as ``host`` and ``port``. Raises OSError when the
    port cannot be bound. Stop it with ``server.should_exit = True`` and await the task.
    """
    cfg = cfg or TokenizerConfig(max_body_bytes=0)
    protocol = http_protocol(cfg.http_impl)
    app = create_app(frontend, metrics, cfg.api_key, cfg.allowed_origins)
    config = uvicorn.Config(
        BodyLimit(app, cfg.max_body_bytes),
        host=host,
        port=port,
        http=protocol,
        log_level="warning",
        lifespan="off",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=5,  # the service drained its streams before stopping us
        **security.uvicorn_ssl(),
    )
    server = _Server(config)
    sock = _bind(host, port)  # binding here turns a busy port into OSError, not SystemExit
    task = asyncio.create_task(server.serve(sockets=[sock]), name="http-api")
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"HTTP API on {host}:{port} stopped during start-up")
        await asyncio.sleep(0.01)
    address = f"{host}:{sock.getsockname()[1]}"
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # asyncio or uvloop
    logger.info("http serving", extra={"kv": {"address": address, "http": protocol, "loop": loop}})
    return server, task
