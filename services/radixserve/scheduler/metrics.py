"""Scheduler metrics (``radixserve_*``), and the three gauges the Kubernetes Gateway API Inference
Extension's endpoint picker reads, under the names its model-server protocol documents
(``vllm:num_requests_waiting``, ``vllm:num_requests_running``, ``vllm:kv_cache_usage_perc``), so
that an InferencePool routes to radixserve with the picker's defaults.

The engine loop calls :meth:`SchedulerMetrics.observe_step` per step and :meth:`sync` after each
result; ``sync`` turns the core's cumulative counters into Prometheus counter increments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from radixserve.common.metrics import (
    LATENCY_BUCKETS,
    REQUEST_BUCKETS,
    SIZE_BUCKETS,
    ServiceMetrics,
)

if TYPE_CHECKING:
    from radixserve.common.types import StepInput
    from radixserve.scheduler.stats import LoadStats


class SchedulerMetrics(ServiceMetrics):
    SERVICE = "scheduler"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.r
        self.running = Gauge("radixserve_running_requests", "Requests running", registry=r)
        self.waiting = Gauge("radixserve_waiting_requests", "Requests waiting", registry=r)
        self.kv_usage = Gauge(
            "radixserve_kv_usage_ratio",
            "Fraction of KV slots held by running requests (evictable cache counts free)",
            registry=r,
        )
        self.cache_hit_rate = Gauge(
            "radixserve_cache_hit_rate",
            "Admitted prompt tokens found in the prefix cache, since start",
            registry=r,
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
        self.cache_queries = Counter(
            "radixserve_prefix_cache_queries",
            "Prompt tokens looked up in the prefix cache at admission",
            registry=r,
        )
        self.cache_hits = Counter(
            "radixserve_prefix_cache_hits",
            "Prompt tokens found in the prefix cache at admission",
            registry=r,
        )
        self.evicted_tokens = Counter(
            "radixserve_evicted_tokens", "KV slots evicted from the prefix cache", registry=r
        )
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
        self.queue_seconds = Histogram(
            "radixserve_request_queue_time_seconds",
            "Arrival at the scheduler to first admission",
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "radixserve_batch_size", "Requests per step", ["mode"], buckets=SIZE_BUCKETS, registry=r
        )
        self.step_prefill_tokens = Histogram(
            "radixserve_step_prefill_tokens",
            "Prefill tokens per step that has any",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.step_decode_requests = Histogram(
            "radixserve_step_decode_requests",
            "Decoding requests per step that has any",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        # The Gateway API Inference Extension's model-server protocol gauges.
        self.gie_waiting = Gauge(
            "vllm:num_requests_waiting",
            "Requests in the queue (GIE TotalQueuedRequests)",
            registry=r,
        )
        self.gie_running = Gauge(
            "vllm:num_requests_running",
            "Requests being served (GIE TotalRunningRequests)",
            registry=r,
        )
        self.gie_kv = Gauge(
            "vllm:kv_cache_usage_perc",
            "KV-cache utilisation, 1 = full (GIE KVCacheUtilization)",
            registry=r,
        )
        self._seen: dict[str, int] = {}
        for reason in ("stop", "length", "abort", "error"):  # present from the start, at 0
            self.requests.labels(reason)

    def observe_step(self, step: StepInput) -> None:
        """One step built by the core: batch size, prefill tokens and decoding requests."""
        reqs = step.reqs
        self.batch_size.labels(step.mode.name.lower()).observe(len(reqs))
        prefill = sum(len(r.new_slots) for r in reqs if not r.is_decode)
        decode = sum(1 for r in reqs if r.is_decode)
        if prefill:
            self.step_prefill_tokens.observe(prefill)
        if decode:
            self.step_decode_requests.observe(decode)

    def sync(self, core: object, stats: LoadStats) -> None:
        """The core's ``stats`` (taken once per step by the loop) and cumulative counters."""
        self.gie_waiting.set(stats.waiting)
        self.gie_running.set(stats.running)
        self.gie_kv.set(stats.kv_usage)
        self._add(self.cache_queries, "queries", getattr(core, "prompt_tokens_total", 0))
        self._add(self.cache_hits, "hits", getattr(core, "cached_tokens_total", 0))
        cache = getattr(getattr(core, "kv", None), "cache", None)
        self._add(self.evicted_tokens, "evicted", getattr(cache, "evicted_tokens_total", 0))
        queue = getattr(core, "queue_times", None)
        while queue:
            self.queue_seconds.observe(queue.popleft())

    def _add(self, counter: Counter, key: str, total: int) -> None:
        delta = total - self._seen.get(key, 0)
        if delta > 0:
            counter.inc(delta)
        self._seen[key] = total
