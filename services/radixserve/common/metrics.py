"""Prometheus helpers shared by the services: one registry per service instance, a ``model_name``
label on every series of a service (like vLLM's), histogram buckets fit for LLM serving.

Every metric is in base units (seconds, bytes, tokens, ratios in [0, 1]). The ``_created`` series
that prometheus-client adds to counters and histograms are switched off process-wide: they double
the series count and no dashboard or rule reads them.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics, make_wsgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

logger = logging.getLogger(__name__)

disable_created_metrics()

# Step and RPC latencies span 100 us (a CPU-side decision) to minutes (a long generation).
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
# Time to first token: a cached short prompt on a GPU answers in ~10 ms, a long prefill behind a
# queue in tens of seconds; the tail goes to many minutes under overload.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0,
)  # fmt: skip
# Inter-token latency / time per output token: a decode step is 5-30 ms on a GPU, far more on a
# CPU or when big prefills share the step.
ITL_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 80.0,
)  # fmt: skip
# End-to-end latency and queue time: seconds to tens of minutes.
REQUEST_BUCKETS = (
    0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
    40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
# Prompt and output lengths in tokens.
TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)
FRACTION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class _ModelLabel(Collector):
    """Re-exports every series of ``inner`` with ``model_name`` added, read at scrape time, so
    that metrics can be created (and observed) before the service knows its model."""

    def __init__(self, inner: CollectorRegistry, owner: ServiceMetrics) -> None:
        self.inner = inner
        self.owner = owner

    def collect(self) -> Iterable[Metric]:
        name = self.owner.model_name
        for family in self.inner.collect():
            out = copy.copy(family)
            out.samples = [
                Sample(s.name, {"model_name": name, **s.labels}, s.value, s.timestamp, s.exemplar)
                for s in family.samples
            ]
            yield out


class ServiceMetrics:
    """Base of each service's metrics: ``registry`` is what ``/metrics`` serves; metrics are
    created in ``inner`` (``self.r``) and get ``model_name`` once :attr:`model_name` is set."""

    SERVICE = ""  # tokenizer, scheduler or worker

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.r = CollectorRegistry()
        self.model_name = ""
        self.registry.register(_ModelLabel(self.r, self))
        # Always 1: the dashboards' instance and model filters list its label values.
        info = Gauge("radixserve_build_info", "Service identity", ["service"], registry=self.r)
        info.labels(self.SERVICE).set(1)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # one line per scrape is noise


def serve_metrics(
    registry: CollectorRegistry, port: int, host: str | None = None
) -> WSGIServer | None:
    """Serves ``/metrics`` for ``registry`` on a daemon thread; port 0 or negative disables it.

    Binds ``RADIXSERVE_METRICS_HOST`` (default 127.0.0.1: set 0.0.0.0 for a Prometheus scrape
    from another host or pod) unless ``host`` is given.

    Always the classic text format: prometheus-client (0.26) writes OpenMetrics sample names with
    ``:`` escaped to ``_`` while their TYPE lines keep the colon, so a Prometheus that negotiates
    OpenMetrics would lose the ``vllm:*`` gauges the inference gateway reads.
    """
    if port <= 0:
        return None
    host = host or os.environ.get("RADIXSERVE_METRICS_HOST", "127.0.0.1")
    app = make_wsgi_app(registry)

    def text_only(environ: dict, start_response: Callable) -> Iterable[bytes]:
        environ["HTTP_ACCEPT"] = "text/plain"
        return app(environ, start_response)

    httpd = make_server(host, port, text_only, _Server, handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True).start()
    logger.info("metrics serving", extra={"kv": {"port": port}})
    return httpd
