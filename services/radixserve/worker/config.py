"""Worker service configuration (flags and RADIXSERVE_* environment variables)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields

from radixserve.worker.runner_config import RunnerConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig(RunnerConfig):
    """The model worker: owns the weights, the KV pool and the forward.

    Every model-runner setting (declared once, in RunnerConfig) plus the serving settings, all
    checked at start-up: a bad value stops the worker before it opens a port or loads a model.
    """

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (0.0.0.0: all)"})
    port: int = field(default=50053, metadata={"help": "gRPC port (0 picks a free one)"})
    metrics_port: int = field(default=9103, metadata={"help": "Prometheus port (0 disables)"})
    step_thread: bool = field(
        default=False,
        metadata={"help": "run steps on a worker thread instead of the event loop thread"},
    )
    tp: int = field(
        default=1, metadata={"help": "tensor-parallel ranks (all nodes together); 1 = off"}
    )
    nnodes: int = field(default=1, metadata={"help": "nodes the TP group spans (multi-node)"})
    node_rank: int = field(default=0, metadata={"help": "this node's index in the TP group"})
    master_addr: str = field(
        default="", metadata={"help": "TP rendezvous host (default MASTER_ADDR or 127.0.0.1)"}
    )
    master_port: int = field(
        default=0, metadata={"help": "TP rendezvous port (default MASTER_PORT; 0 = free port)"}
    )
    tp_timeout: float = field(
        default=120.0, metadata={"help": "seconds before a stuck TP collective fails the group"}
    )
    drain_seconds: float = field(
        default=40.0,
        metadata={
            "help": "on SIGTERM, how long steps are still served while a scheduler stream is "
            "open (keep it above the scheduler's drain)"
        },
    )

    def problems(self) -> list[str]:
        out = super().problems()
        for name in ("port", "metrics_port", "master_port"):
            if not 0 <= getattr(self, name) <= 65535:
                out.append(f"{name} must be in [0, 65535], got {getattr(self, name)}")
        if self.tp < 1:
            out.append(f"tp must be at least 1, got {self.tp}")
        if self.nnodes < 1 or not 0 <= self.node_rank < self.nnodes:
            out.append(f"node_rank must be in [0, nnodes={self.nnodes}), got {self.node_rank}")
        if self.tp_timeout <= 0:
            out.append(f"tp_timeout must be positive, got {self.tp_timeout}")
        if self.drain_seconds < 0:
            out.append(f"drain_seconds must be >= 0, got {self.drain_seconds}")
        return out

    @property
    def runner(self) -> RunnerConfig:
        """The embedded runner config alone (what ``ModelRunner`` is built from)."""
        return RunnerConfig(**{f.name: getattr(self, f.name) for f in fields(RunnerConfig)})
