"""Tokenizer (front door) metrics: requests by endpoint, tokens, and client-seen latencies.

The endpoint of a request comes from :data:`ENDPOINT`, which the HTTP middleware of
``services.tokenizer.observability_http`` sets per route; a request without one came through
gRPC ``Generate``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from radixserve.common.metrics import (
    ITL_BUCKETS,
    LATENCY_BUCKETS,
    REQUEST_BUCKETS,
    TOKEN_BUCKETS,
    TTFT_BUCKETS,
    ServiceMetrics,
)
from radixserve.tokenizer.manager import Chunk
from radixserve.tokenizer.prompts import GenerateInput

GRPC_GENERATE = "grpc_generate"
ENDPOINTS = ("chat", "completions", GRPC_GENERATE)
FINISH_REASONS = ("stop", "length", "abort", "error")
ENDPOINT: contextvars.ContextVar[str] = contextvars.ContextVar("endpoint", default=GRPC_GENERATE)


class _Tracker:
    def __init__(self, metrics: TokenizerMetrics, endpoint: str) -> None:
        self.m = metrics
        self.endpoint = endpoint
        self.start = time.perf_counter()
        self.last = self.start
        self.first_at = 0.0
        self.tokens = 0
        self.finish = "abort"  # a request that never finished was cut by its client

    def chunk(self, chunk: Chunk) -> None:
        now = time.perf_counter()
        if chunk.token_ids:
            if not self.first_at:
                self.first_at = now
                self.m.ttft.observe(now - self.start)
            else:
                # NOTE: a chunk of k tokens (stream_interval > 1) counts k gaps of its mean.
                n = len(chunk.token_ids)
                for _ in range(n):
                    self.m.itl.observe((now - self.last) / n)
            self.last = now
            self.tokens += len(chunk.token_ids)
            self.m.generation_tokens.inc(len(chunk.token_ids))
        if chunk.finish_reason is not None:
            self.finish = chunk.finish_reason

    def done(self) -> None:
        end = time.perf_counter()
        m = self.m
        m.requests.labels(self.endpoint, self.finish).inc()
        m.e2e.observe(end - self.start)
        m.generation_length.observe(self.tokens)
        if self.tokens > 1:
            m.tpot.observe((end - self.first_at) / (self.tokens - 1))


class TokenizerMetrics(ServiceMetrics):
    SERVICE = "tokenizer"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.r
        self.requests = Counter(
            "radixserve_frontend_requests",
            "Requests that ended, by endpoint and finish reason (stop, length, abort, error)",
            ["endpoint", "finish_reason"],
            registry=r,
        )
        self.errors = Counter(
            "radixserve_frontend_errors",
            "HTTP requests answered with an error status, by endpoint and status code",
            ["endpoint", "code"],
            registry=r,
        )
        self.running = Gauge(
            "radixserve_frontend_running_requests", "Requests in flight", ["endpoint"], registry=r
        )
        self.open_streams = Gauge(
            "radixserve_frontend_open_streams",
            "Streaming responses open (SSE and gRPC Generate)",
            ["endpoint"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "radixserve_frontend_prompt_tokens", "Prompt tokens received", registry=r
        )
        self.generation_tokens = Counter(
            "radixserve_frontend_generation_tokens", "Tokens streamed to clients", registry=r
        )
        self.prompt_length = _hist(r, "request_prompt_tokens", "Prompt length", TOKEN_BUCKETS)
        self.generation_length = _hist(
            r, "request_generation_tokens", "Generated tokens per request", TOKEN_BUCKETS
        )
        self.ttft = _hist(r, "time_to_first_token_seconds", "Arrival to first token", TTFT_BUCKETS)
        self.itl = _hist(r, "inter_token_latency_seconds", "Time between tokens", ITL_BUCKETS)
        self.tpot = _hist(
            r,
            "time_per_output_token_seconds",
            "Per request: (end - first token) / (tokens - 1)",
            ITL_BUCKETS,
        )
        self.e2e = _hist(
            r, "e2e_request_latency_seconds", "Arrival to the last token", REQUEST_BUCKETS
        )
        self.tokenize_seconds = _hist(
            r, "tokenize_seconds", "Time of one encode call", LATENCY_BUCKETS
        )
        self.detokenize_seconds = _hist(
            r, "detokenize_seconds", "Time of one decode call", LATENCY_BUCKETS
        )

        # Series exist from the start (at 0), so rates and alerts see the first event.
        for endpoint in ENDPOINTS:
            self.running.labels(endpoint)
            self.open_streams.labels(endpoint)
            for reason in FINISH_REASONS:
                self.requests.labels(endpoint, reason)

    def instrument(self, tokenizer: Any) -> None:
        """Times the tokenizer's ``encode`` and ``decode`` (every prompt and detokenizer step
        goes through them) without touching the callers."""
        tokenizer.encode = _timed(tokenizer.encode, self.tokenize_seconds)
        tokenizer.decode = _timed(tokenizer.decode, self.detokenize_seconds)

    @contextlib.asynccontextmanager
    async def track(self, req: GenerateInput) -> AsyncIterator[_Tracker]:
        endpoint = ENDPOINT.get()
        tracker = _Tracker(self, endpoint)
        streaming = endpoint == GRPC_GENERATE  # HTTP streams are counted by the middleware
        self.running.labels(endpoint).inc()
        if streaming:
            self.open_streams.labels(endpoint).inc()
        self.prompt_tokens.inc(len(req.input_ids))
        self.prompt_length.observe(len(req.input_ids))
        try:
            yield tracker
        finally:
            self.running.labels(endpoint).dec()
            if streaming:
                self.open_streams.labels(endpoint).dec()
            tracker.done()


def _hist(r: CollectorRegistry, name: str, doc: str, buckets: tuple) -> Histogram:
    return Histogram(f"radixserve_{name}", doc, buckets=buckets, registry=r)


def _timed(fn: Callable[..., Any], hist: Histogram) -> Callable[..., Any]:
    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            hist.observe(time.perf_counter() - start)

    return timed
