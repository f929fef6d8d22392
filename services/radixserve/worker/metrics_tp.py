"""Per-rank tensor-parallel metrics (``radixserve_worker_tp_*{tp_rank}``), all served by the
host's worker endpoint (``--metrics-port``), like vLLM's and SGLang's one ``/metrics`` per server.

Each rank records its own forward time and all-reduces in a :class:`TPMetrics`. A follower process
serves its registry on loopback only, at ``--metrics-port + rank``; the host's serving process
(rank 0, or a follower host's first rank) reads those at scrape time and re-exports them next to
its own rank's, labelled ``tp_rank``, with ``radixserve_worker_tp_rank_up{tp_rank}`` saying
whether that rank answered. So Prometheus scrapes one target per pod, whatever ``--tp`` is.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from radixserve.common.metrics import LATENCY_BUCKETS, ServiceMetrics

logger = logging.getLogger(__name__)
SCRAPE_TIMEOUT_S = 1.0  # a loopback read of a few kB; a rank that takes longer counts as down


class TPMetrics:
    """One rank's figures. All-reduce figures are host-side: on CUDA they count eager launches
    only (CUDA-graph replays are not seen from Python)."""

    def __init__(self, rank: int) -> None:
        self.registry = CollectorRegistry()
        self.rank = str(rank)
        r, label = self.registry, ["tp_rank"]
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
        self.forward_seconds.labels(self.rank)  # present from the start, at 0
        self.allreduce_seconds.labels(self.rank)
        self.allreduce_bytes.labels(self.rank)
        self._seen = (0, 0.0)

    def observe(self, seconds: float, group: object) -> None:
        """Records one step and the group's all-reduce counters since the last call."""
        self.forward_seconds.labels(self.rank).observe(seconds)
        nbytes, secs = group.allreduce_bytes, group.allreduce_seconds  # type: ignore[attr-defined]
        self.allreduce_bytes.labels(self.rank).inc(nbytes - self._seen[0])
        self.allreduce_seconds.labels(self.rank).inc(secs - self._seen[1])
        self._seen = (nbytes, secs)


class HostRanksMetrics(ServiceMetrics):
    """The metrics endpoint of a host without rank 0 (multi-node): its ranks' series only."""

    SERVICE = "worker"


class HostRanks(Collector):
    """This host's ranks as one set of families: the in-process rank's registry plus each local
    follower's loopback endpoint (``ports``: rank -> port), read at scrape time."""

    def __init__(self, own_rank: int, own: CollectorRegistry, ports: dict[int, int]) -> None:
        self.own_rank, self.own, self.ports = own_rank, own, ports

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        up = GaugeMetricFamily(
            "radixserve_worker_tp_rank_up",
            "1 when the TP rank's metrics could be read at this scrape",
            labels=["tp_rank"],
        )
        up.add_metric([str(self.own_rank)], 1)
        _merge(families, self.own.collect())
        for rank, port in sorted(self.ports.items()):
            text = _read(port)
            up.add_metric([str(rank)], 0 if text is None else 1)
            if text is not None:
                _merge(families, text_string_to_metric_families(text))
        yield up
        yield from families.values()


def follower_ports(metrics_port: int, ranks: Sequence[int]) -> dict[int, int]:
    """Where the followers among ``ranks`` (all but the first) serve: metrics port + rank."""
    if metrics_port <= 0:
        return {}
    return {rank: metrics_port + rank for rank in list(ranks)[1:]}


def _merge(families: dict[str, Metric], more: Iterable[Metric]) -> None:
    """Adds ``more``'s samples to the family of the same name (one TYPE line per name)."""
    for family in more:
        have = families.get(family.name)
        if have is None:
            have = Metric(family.name, family.documentation, family.type, family.unit)
            families[family.name] = have
        have.samples.extend(family.samples)


def _read(port: int) -> str | None:
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as resp:  # noqa: S310 - loopback
            return resp.read().decode()
    except OSError as exc:
        logger.debug("TP rank metrics unreadable", extra={"kv": {"port": port, "err": exc}})
        return None
