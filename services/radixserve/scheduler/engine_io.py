"""What the engine loop exchanges with its two sides, as domain types: the worker's step stream
(a protocol that clients.ForwardStream implements over gRPC and tests fake in memory) and the
per-tokenizer outbox of :class:`~radixserve.common.outputs.Outputs` (server.py sends them)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from radixserve.common.outputs import Outputs
from radixserve.common.types import ModelInfo, StepInput, StepOutput

logger = logging.getLogger(__name__)


class WorkerGone(Exception):
    """The worker's step stream broke, or the worker stopped answering."""


class StepRejected(Exception):
    """The worker rejected a step: the session's KV and cache can no longer be trusted."""


@dataclass(frozen=True)
class StepFailed:
    """The worker rejected one step (the stream itself goes on)."""

    step_id: int
    error: str


class StepStream(Protocol):
    """One session of the worker's step stream. ``recv`` must be safe to cancel."""

    async def send(self, step: StepInput) -> None: ...
    async def recv(self) -> StepOutput | StepFailed: ...
    def close(self) -> None: ...


class WorkerLink(Protocol):
    async def wait_ready(self, timeout: float) -> None: ...
    async def get_info(self) -> ModelInfo: ...
    def open_stream(self) -> StepStream: ...


@dataclass(frozen=True)
class LoopConfig:
    step_timeout: float = 300.0  # a step with no result this long is a worker failure
    reconnect_min: float = 0.2  # backoff between reconnect attempts, doubling up to the max
    reconnect_max: float = 5.0
    ready_timeout: float = 5.0  # one reconnect attempt waits this long for the worker's readiness
    max_waiting: int = 0  # queued requests beyond which new ones are refused; 0: no bound
    probe_every: float = 1.0  # how often the worker's readiness is checked while connected
    probe_timeout: float = 0.0  # a worker not answering within this is a hang; 0: no probes


@dataclass
class ClientStream:
    """One tokenizer replica's Connect stream: its requests and its outbox of Outputs (None in
    the outbox ends the stream: the scheduler is shutting down)."""

    client_id: int
    name: str = ""
    rids: set[str] = field(default_factory=set)
    outbox: asyncio.Queue[Outputs | None] = field(default_factory=asyncio.Queue)

    def key(self, rid: str) -> str:
        return f"{self.client_id}/{rid}"
