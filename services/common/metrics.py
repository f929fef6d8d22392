"""Prometheus helpers: one registry per service instance, served on its own port."""

from __future__ import annotations

import logging
import os

from prometheus_client import CollectorRegistry, start_http_server

logger = logging.getLogger(__name__)

# Step and request latencies span 100 us (a CPU-side decision) to minutes (a long generation).
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def serve_metrics(registry: CollectorRegistry, port: int, host: str | None = None) -> None:
    """Serves ``/metrics`` for ``registry``; port 0 or negative disables it.

    Binds ``RADIXSERVE_METRICS_HOST`` (default 127.0.0.1: set 0.0.0.0 for a Prometheus scrape
    from another host or pod) unless ``host`` is given.
    """
    if port <= 0:
        return
    host = host or os.environ.get("RADIXSERVE_METRICS_HOST", "127.0.0.1")
    start_http_server(port, addr=host, registry=registry)
    logger.info("metrics serving", extra={"kv": {"port": port}})
