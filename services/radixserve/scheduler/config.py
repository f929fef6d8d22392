"""Scheduler service configuration (flags and RADIXSERVE_* environment variables).

``SchedulerConfig`` embeds the core's ``SchedulerCoreConfig``: the loader in common/config.py
gives each core field its own flag and variable (``--schedule-policy``,
``RADIXSERVE_SCHEDULE_POLICY``), and building the config validates it, so a mistyped policy fails
at start-up, before the scheduler connects to its worker.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from radixserve.scheduler.core_config import SchedulerCoreConfig


@dataclass(frozen=True)
class SchedulerConfig:
    """The scheduler: batching, prefix cache and KV-slot bookkeeping for one worker group."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (0.0.0.0: all)"})
    port: int = field(default=50052, metadata={"help": "gRPC port (0 picks a free one)"})
    metrics_port: int = field(default=9102, metadata={"help": "Prometheus port (0 disables)"})
    worker_address: str = field(default="localhost:50053", metadata={"help": "worker rank 0"})
    worker_wait_seconds: float = field(
        default=900.0, metadata={"help": "how long to wait for the worker to load its model"}
    )
    step_timeout_seconds: float = field(
        default=300.0,
        metadata={"help": "a step with no result this long counts as a worker failure"},
    )
    reconnect_max_seconds: float = field(
        default=5.0, metadata={"help": "longest pause between reconnects to a lost worker"}
    )
    drain_seconds: float = field(
        default=30.0,
        metadata={"help": "on SIGTERM, how long running and queued requests may finish"},
    )
    max_waiting_requests: int = field(
        default=1024,
        metadata={
            "help": "queued requests (all tokenizers together) beyond which new ones are "
            "refused as overloaded (0: no bound)"
        },
    )
    worker_probe_timeout_seconds: float = field(
        default=10.0,
        metadata={
            "help": "a worker that does not answer its readiness check within this makes this "
            "scheduler NOT_SERVING until it answers again (0: no probes)"
        },
    )
    core: SchedulerCoreConfig = field(default_factory=SchedulerCoreConfig)

    def __post_init__(self) -> None:
        for name in ("worker_wait_seconds", "step_timeout_seconds", "reconnect_max_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("max_waiting_requests", "worker_probe_timeout_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.drain_seconds < 0:
            raise ValueError(f"drain_seconds: must be >= 0, got {self.drain_seconds}")


_SERVICE_FIELDS = {f.name for f in dataclasses.fields(SchedulerConfig)} - {"core"}


def scheduler_config(**values: Any) -> SchedulerConfig:
    """A SchedulerConfig from flat keyword arguments (service and core fields mixed)."""
    own = {k: v for k, v in values.items() if k in _SERVICE_FIELDS}
    core = SchedulerCoreConfig(**{k: v for k, v in values.items() if k not in _SERVICE_FIELDS})
    return SchedulerConfig(**own, core=core)
