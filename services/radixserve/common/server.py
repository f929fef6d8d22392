"""gRPC server bootstrap shared by every service: health, reflection, metrics, graceful stop.

Health serves ``""``, ``liveness`` and ``readiness``. Liveness is SERVING as soon as the port is
open; readiness (and ``""``) stay NOT_SERVING until the service calls :meth:`set_ready`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from radixserve.common import security
from radixserve.common.interceptors import LoggingInterceptor, MetricsInterceptor
from radixserve.common.security import GRPC_OPTIONS, MAX_MESSAGE_BYTES  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

ConfigT = TypeVar("ConfigT")


class RunningService(Protocol):
    """What a service's ``start(cfg)`` returns to :func:`run_service` (which also awaits its
    ``drain()`` when it has one)."""

    def stop(self) -> Awaitable[object]: ...


class ServiceServer:
    """One grpc.aio server with health and reflection for the given full service names.

    ``public`` (the front door): TLS without client certificates and no shared token, but
    ``api_key`` when given; internal servers (the default) get both when configured and refuse
    to bind beyond loopback with neither (see :mod:`radixserve.common.security`).
    """

    def __init__(
        self,
        name: str,
        address: str,
        service_names: Iterable[str],
        registry: CollectorRegistry | None = None,
        public: bool = False,
        options: list[tuple[str, object]] | None = None,
        api_key: str = "",
    ) -> None:
        if not public:
            security.check_exposure(name, address)  # NOTE: before anything binds
        self.name = name
        self.address = address
        self.public = public
        self.service_names = list(service_names)
        interceptors = [
            *security.server_interceptors(public, api_key=api_key),
            LoggingInterceptor(),
        ]
        if registry is not None:  # the service's metrics registry: gRPC server metrics go there
            interceptors.append(MetricsInterceptor(registry))
        self.server = grpc.aio.server(options=options or GRPC_OPTIONS, interceptors=interceptors)
        self.health = health_aio.HealthServicer()
        self.port = 0

    async def start(self, register: Callable[[grpc.aio.Server], None]) -> int:
        """Registers the servicers, opens the port and marks liveness SERVING."""
        register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [*self.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], self.server)
        self.port = security.add_port(self.server, self.address, self.public)
        if self.port == 0:
            raise OSError(f"{self.name}: cannot bind gRPC address {self.address}")
        await self.server.start()
        await self.health.set("liveness", SERVING)
        await self.set_ready(False)
        logger.info("grpc serving", extra={"kv": {"service": self.name, "port": self.port}})
        return self.port

    async def set_ready(self, ready: bool) -> None:
        status = SERVING if ready else NOT_SERVING
        for service in ("", "readiness", *self.service_names):
            await self.health.set(service, status)

    async def stop(self, grace: float = 2.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM set ``stop`` so that ``__main__`` can shut down cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def run_service(
    name: str,
    config_cls: type[ConfigT],
    start: Callable[[ConfigT], Awaitable[RunningService]],
    argv: list[str] | None = None,
) -> None:
    """What every ``python -m radixserve.<name>`` does: config, logging, start, serve
    until a SIGINT/SIGTERM, drain, stop. ``start(cfg)`` returns a handle with an async
    ``stop()`` and optionally an async ``drain()`` (let in-flight work finish, refuse new work),
    which the signal runs first."""
    from radixserve.common.config import parse_configs
    from radixserve.common.logs import setup_logging

    setup_logging(name)
    cfg, sec = parse_configs(
        [config_cls, security.SecurityConfig], argv, prog=f"python -m radixserve.{name}"
    )
    security.configure(sec)
    if os.environ.get("RADIXSERVE_SWITCH_INTERVAL"):
        # How long a thread holds the GIL before another may take it (Python's default: 5 ms).
        sys.setswitchinterval(float(os.environ["RADIXSERVE_SWITCH_INTERVAL"]))

    async def serve() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        running = await _start_unless_stopped(start(cfg), stop)
        if running is None:
            return
        await stop.wait()
        drain = getattr(running, "drain", None)
        if drain is not None:
            await drain()
        await running.stop()

    factory = loop_factory(getattr(cfg, "event_loop", "asyncio"))
    try:
        if factory is None or sys.version_info < (3, 11):
            asyncio.run(serve())
        else:
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(serve())
    except security.Unprotected as exc:
        # NOTE: a refusal to open, not a crash: one clear line and exit status 1, no traceback.
        logger.error("refusing to start", extra={"kv": {"why": str(exc)}})
        raise SystemExit(f"error: {exc}") from None


async def _start_unless_stopped(
    starting: Awaitable[RunningService], stop: asyncio.Event
) -> RunningService | None:
    """``starting``'s handle, or None when a SIGTERM/SIGINT came first: a start can wait minutes
    for its peer (``--worker-wait-seconds``), and a signal then ends the process at once instead
    of after that wait (issue 23)."""
    start_task = asyncio.ensure_future(starting)
    stop_task = asyncio.ensure_future(stop.wait())
    await asyncio.wait({start_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    if start_task.done():
        stop_task.cancel()
        return start_task.result()
    logger.info("stopped during start-up")
    start_task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await start_task
    return None


EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop a service runs on: ``uvloop`` (libuv, less per-callback overhead),
    ``asyncio`` (None: the standard loop), or ``auto`` (uvloop when it is installed)."""
    if choice not in EVENT_LOOPS:
        raise ValueError(f"event_loop: unknown {choice!r}, known: {', '.join(EVENT_LOOPS)}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ValueError("event_loop: uvloop is not installed (pip install uvloop)") from None
        return None
    return uvloop.new_event_loop
