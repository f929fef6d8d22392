"""Worker metrics (``radixserve_worker_*``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS, SIZE_BUCKETS


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.steps = Counter("radixserve_worker_steps", "Forward steps", ["mode"], registry=r)
        self.tokens = Counter(
            "radixserve_worker_tokens", "Tokens run through the model", ["kind"], registry=r
        )
        self.step_seconds = Histogram(
            "radixserve_worker_step_seconds",
            "Forward + sampling time of one step",
            ["mode"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "radixserve_worker_batch_size", "Requests per step", buckets=SIZE_BUCKETS, registry=r
        )
        self.kv_slots = Gauge("radixserve_worker_kv_slots", "KV pool size in slots", registry=r)
        self.load_seconds = Gauge(
            "radixserve_worker_model_load_seconds", "Time to load the model", registry=r
        )
        self.errors = Counter("radixserve_worker_step_errors", "Failed steps", registry=r)
