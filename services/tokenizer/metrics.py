"""Tokenizer (front door) metrics: request counts and client-seen latencies."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS
from services.tokenizer.manager import Chunk
from services.tokenizer.prompts import GenerateInput


class _Tracker:
    def __init__(self, metrics: TokenizerMetrics) -> None:
        self.m = metrics
        self.start = time.perf_counter()
        self.last = self.start
        self.first = True
        self.finish = "abort"

    def chunk(self, chunk: Chunk) -> None:
        now = time.perf_counter()
        if chunk.token_ids:
            if self.first:
                self.m.ttft.observe(now - self.start)
                self.first = False
            else:
                self.m.itl.observe((now - self.last) / len(chunk.token_ids))
            self.last = now
            self.m.generation_tokens.inc(len(chunk.token_ids))
        if chunk.finish_reason is not None:
            self.finish = chunk.finish_reason


class TokenizerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.requests = Counter(
            "radixserve_frontend_requests", "Finished requests", ["finish_reason"], registry=r
        )
        self.running = Gauge("radixserve_frontend_running_requests", "Open requests", registry=r)
        self.prompt_tokens = Counter(
            "radixserve_frontend_prompt_tokens", "Prompt tokens received", registry=r
        )
        self.generation_tokens = Counter(
            "radixserve_frontend_generation_tokens", "Tokens streamed to clients", registry=r
        )
        self.ttft = Histogram(
            "radixserve_time_to_first_token_seconds",
            "Time to first token",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "radixserve_inter_token_latency_seconds",
            "Time between tokens",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "radixserve_request_latency_seconds",
            "Request latency",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "radixserve_frontend_errors", "Rejected requests", ["code"], registry=r
        )

    @contextlib.asynccontextmanager
    async def track(self, req: GenerateInput) -> AsyncIterator[_Tracker]:
        tracker = _Tracker(self)
        self.running.inc()
        self.prompt_tokens.inc(len(req.input_ids))
        try:
            yield tracker
        finally:
            self.running.dec()
            self.requests.labels(tracker.finish).inc()
            self.e2e.observe(time.perf_counter() - tracker.start)
