"""Worker service configuration (flags and RADIXSERVE_* environment variables)."""

from __future__ import annotations

import logging
import os
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

    profile_dir: str = field(
        default="/tmp/radixserve-profile",
        metadata={
            "help": "profiling traces go under this directory (a client names at most a "
            "subdirectory)"
        },
    )
    max_profile_steps: int = field(
        default=64, metadata={"help": "a profile stops by itself after at most this many steps"}
    )
    max_profile_bytes: int = field(
        default=256 * 1024 * 1024,
        metadata={"help": "a larger trace is deleted and its stop answers an error"},
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
        if self.max_profile_steps < 1 or self.max_profile_bytes < 1:
            out.append("max_profile_steps and max_profile_bytes must be >= 1")
        if not os.path.isabs(self.profile_dir):
            out.append(f"profile_dir must be an absolute path, got {self.profile_dir!r}")
        if self.drain_seconds < 0:
            out.append(f"drain_seconds must be >= 0, got {self.drain_seconds}")
        return out

    @property
    def runner(self) -> RunnerConfig:
        """The embedded runner config alone (what ``ModelRunner`` is built from)."""
        return RunnerConfig(**{f.name: getattr(self, f.name) for f in fields(RunnerConfig)})
