"""Worker service configuration (flags and RADIXSERVE_* environment variables)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields

from services.worker.runner_config import RunnerConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig(RunnerConfig):
    """The model worker: owns the weights, the KV pool and the forward.

    Every model-runner setting (declared once, in RunnerConfig) plus the serving settings, all
    checked at start-up: a bad value stops the worker before it opens a port or loads a model.
    """

    host: str = field(default="0.0.0.0", metadata={"help": "address to bind"})
    port: int = field(default=50053, metadata={"help": "gRPC port (0 picks a free one)"})
    metrics_port: int = field(default=9103, metadata={"help": "Prometheus port (0 disables)"})
    step_thread: bool = field(
        default=False,
        metadata={"help": "run steps on a worker thread instead of the event loop thread"},
    )

    def problems(self) -> list[str]:
        out = super().problems()
        for name in ("port", "metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                out.append(f"{name} must be in [0, 65535], got {getattr(self, name)}")
        return out

    @property
    def runner(self) -> RunnerConfig:
        """The embedded runner config alone (what ``ModelRunner`` is built from)."""
        return RunnerConfig(**{f.name: getattr(self, f.name) for f in fields(RunnerConfig)})
