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


class TPMetrics:
    """Per-rank tensor-parallel metrics (rank ``r`` serves them on the metrics port + ``r``).

    All-reduce figures are host-side: on CUDA they count eager launches only (CUDA-graph replays
    are not seen from Python).
    """

    def __init__(self, rank: int, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.rank = str(rank)
        r, label = self.registry, ["rank"]
        self.forward_seconds = Histogram(
            "radixserve_worker_tp_forward_seconds",
            "Forward time of one step on this rank",
            label,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.allreduce_seconds = Counter(
            "radixserve_worker_tp_allreduce_seconds", "Host time in all-reduces", label, registry=r
        )
        self.allreduce_bytes = Counter(
            "radixserve_worker_tp_allreduce_bytes", "Bytes all-reduced", label, registry=r
        )
        self._seen = (0, 0.0)

    def observe(self, seconds: float, group: object) -> None:
        """Records one step and the group's all-reduce counters since the last call."""
        self.forward_seconds.labels(self.rank).observe(seconds)
        nbytes, secs = group.allreduce_bytes, group.allreduce_seconds  # type: ignore[attr-defined]
        self.allreduce_bytes.labels(self.rank).inc(nbytes - self._seen[0])
        self.allreduce_seconds.labels(self.rank).inc(secs - self._seen[1])
        self._seen = (nbytes, secs)
