"""Runs the three real services in-process on loopback, in a background event loop.

Tests talk to them over real gRPC and HTTP from the main thread, with sync clients.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from radixserve.scheduler.config import SchedulerConfig, scheduler_config
from radixserve.scheduler.server import start_scheduler
from radixserve.tokenizer.config import TokenizerConfig
from radixserve.tokenizer.server import start_tokenizer
from radixserve.worker.config import WorkerConfig
from radixserve.worker.server import start_worker

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    """Addresses of a running stack, and the loop that runs it."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    tokenizer_address: str = ""
    scheduler_address: str = ""
    worker_address: str = ""
    http_url: str = ""
    metrics_ports: dict[str, int] = field(default_factory=dict)
    scheduler_addresses: list[str] = field(default_factory=list)  # one per engine
    handles: list[Any] = field(default_factory=list)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 600) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        """Stops the services and the loop; a second call does nothing."""
        if not self.loop.is_running():
            return

        async def _stop() -> None:
            for handle in reversed(self.handles):
                await handle.stop()

        self.call(_stop(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_stack(
    worker: dict[str, Any] | None = None,
    scheduler: dict[str, Any] | None = None,
    tokenizer: dict[str, Any] | None = None,
    runner: object | None = None,
    engines: int = 1,
    runners: list[object | None] | None = None,
) -> Stack:
    """Starts worker, scheduler and tokenizer on free loopback ports (each config overridable).

    ``engines > 1`` starts that many worker + scheduler pairs behind the one tokenizer (the
    first pair's addresses and metrics ports are the Stack's; the others serve no metrics).
    ``runners`` gives each engine's ModelRunner (one runner serves one engine at a time).
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="stack-loop", daemon=True)
    thread.start()
    stack = Stack(loop, thread)
    ports = {k: free_port() for k in ("worker", "scheduler", "tokenizer", "http")}
    metrics = {k: free_port() for k in ("worker", "scheduler", "tokenizer")}
    stack.metrics_ports = metrics
    host = "127.0.0.1"
    stack.worker_address = f"{host}:{ports['worker']}"
    stack.scheduler_address = f"{host}:{ports['scheduler']}"
    stack.tokenizer_address = f"{host}:{ports['tokenizer']}"
    stack.http_url = f"http://{host}:{ports['http']}"
    wcfg = WorkerConfig(
        host=host, port=ports["worker"], metrics_port=metrics["worker"], **(worker or {})
    )
    scfg = scheduler_config(
        host=host,
        port=ports["scheduler"],
        metrics_port=metrics["scheduler"],
        worker_address=stack.worker_address,
        worker_wait_seconds=120,
        **(scheduler or {}),
    )
    tcfg = TokenizerConfig(
        host=host,
        port=ports["tokenizer"],
        http_port=ports["http"],
        metrics_port=metrics["tokenizer"],
        scheduler_address=stack.scheduler_address,
        scheduler_wait_seconds=60,
        model=wcfg.model,
        load_format=wcfg.load_format,
        **{"drain_seconds": 5.0, **(tokenizer or {})},  # a test's leftovers wait 5 s, not 30
    )
    pairs = [(wcfg, scfg)] + [_extra_engine(wcfg, scfg, host) for _ in range(engines - 1)]
    stack.scheduler_addresses = [f"{host}:{s.port}" for _, s in pairs]
    tcfg = replace(tcfg, scheduler_address=",".join(stack.scheduler_addresses))
    engine_runners = runners or [runner] + [None] * (engines - 1)

    async def _start() -> None:
        for (w, s), r in zip(pairs, engine_runners, strict=True):
            stack.handles.append(await start_worker(w, r))
            stack.handles.append(await start_scheduler(s))
        stack.handles.append(await start_tokenizer(tcfg))

    try:
        stack.call(_start())
    except BaseException:
        stack.stop()
        raise
    return stack


def _extra_engine(
    wcfg: WorkerConfig, scfg: SchedulerConfig, host: str
) -> tuple[WorkerConfig, SchedulerConfig]:
    worker = replace(wcfg, port=free_port(), metrics_port=0)
    scheduler = replace(
        scfg, port=free_port(), metrics_port=0, worker_address=f"{host}:{worker.port}"
    )
    return worker, scheduler
