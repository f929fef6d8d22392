"""Scheduler metrics (``radixserve_*``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS, SIZE_BUCKETS


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.running = Gauge("radixserve_running_requests", "Requests running", registry=r)
        self.waiting = Gauge("radixserve_waiting_requests", "Requests waiting", registry=r)
        self.kv_usage = Gauge("radixserve_kv_usage_ratio", "Fraction of KV slots used", registry=r)
        self.cache_hit_rate = Gauge(
            "radixserve_cache_hit_rate", "Prompt tokens served from the prefix cache", registry=r
        )
        self.new_token_ratio = Gauge(
            "radixserve_new_token_ratio", "Admission reservation ratio", registry=r
        )
        self.retractions = Counter(
            "radixserve_retractions", "Requests retracted to the queue", registry=r
        )
        self.requests = Counter(
            "radixserve_requests", "Finished requests", ["finish_reason"], registry=r
        )
        self.generated_tokens = Counter(
            "radixserve_generation_tokens", "Generated tokens", registry=r
        )
        self.prompt_tokens = Counter("radixserve_prompt_tokens", "Prompt tokens", registry=r)
        self.step_seconds = Histogram(
            "radixserve_step_seconds",
            "Time between consecutive step results",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.schedule_seconds = Histogram(
            "radixserve_schedule_seconds",
            "Time to build one step",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "radixserve_batch_size", "Requests per step", ["mode"], buckets=SIZE_BUCKETS, registry=r
        )
