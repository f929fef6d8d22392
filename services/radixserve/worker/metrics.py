"""Worker metrics (``radixserve_worker_*``): forward time by mode, CUDA-graph replays vs eager
forwards, memory by use, step errors, and the live roofline (see ``roofline.py``).

The servicer brackets each step with :meth:`WorkerMetrics.step_begin` / :meth:`step_end`; on a
GPU these record CUDA events, so the step's device time is measured, not its host time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from radixserve.common.metrics import (
    FRACTION_BUCKETS,
    LATENCY_BUCKETS,
    SIZE_BUCKETS,
    ServiceMetrics,
)

logger = logging.getLogger(__name__)
MODES = {1: "prefill", 2: "decode", 3: "mixed"}  # ForwardMode values


class WorkerMetrics(ServiceMetrics):
    SERVICE = "worker"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.r
        self.steps = Counter("radixserve_worker_steps", "Forward steps", ["mode"], registry=r)
        self.forwards = Counter(
            "radixserve_worker_forwards",
            "Forwards by how they ran: cuda_graph (a replay) or eager",
            ["path"],
            registry=r,
        )
        self.tokens = Counter(
            "radixserve_worker_tokens", "Tokens run through the model", ["kind"], registry=r
        )
        self.step_seconds = Histogram(
            "radixserve_worker_step_seconds",
            "Forward + sampling time of one step (device time on a GPU)",
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
        for path in ("cuda_graph", "eager"):  # present from the start, at 0
            self.forwards.labels(path)
        self._roofline_metrics(r)
        self.runner: Any = None
        self.cost: Any = None
        self._graph_replayed = False

    def _roofline_metrics(self, r: CollectorRegistry) -> None:
        self.peak_bandwidth = Gauge(
            "radixserve_worker_peak_memory_bandwidth_bytes_per_second",
            "Copy bandwidth measured at start-up (read + write)",
            registry=r,
        )
        self.peak_flops = Gauge(
            "radixserve_worker_peak_matmul_flops_per_second",
            "Matmul throughput measured at start-up, model dtype",
            registry=r,
        )
        self.forward_bytes = Counter(
            "radixserve_worker_forward_bytes", "Bytes the forwards must move", registry=r
        )
        self.forward_flops = Counter(
            "radixserve_worker_forward_flops", "FLOPs the forwards must compute", registry=r
        )
        self.device_seconds = Counter(
            "radixserve_worker_forward_device_seconds", "Measured time of the steps", registry=r
        )
        self.bandwidth_util = Histogram(
            "radixserve_worker_memory_bandwidth_utilization_ratio",
            "Per step: bytes moved / step time / measured bandwidth ceiling",
            ["mode"],
            buckets=FRACTION_BUCKETS,
            registry=r,
        )
        self.compute_util = Histogram(
            "radixserve_worker_matmul_utilization_ratio",
            "Per step: FLOPs / step time / measured matmul ceiling",
            ["mode"],
            buckets=FRACTION_BUCKETS,
            registry=r,
        )

    def attach(self, runner: Any) -> None:
        """The model has loaded: name, capacity, memory, roofline ceilings, graph replays."""
        from radixserve.worker.roofline import ModelCost, measure_ceilings

        self.runner = runner
        self.model_name = runner.info.model_name
        self.kv_slots.set(runner.info.num_slots)
        try:
            ceilings = measure_ceilings(runner.device, runner.dtype)
        except RuntimeError as exc:  # e.g. no memory left for the scratch buffers
            logger.warning("roofline off: cannot measure the ceilings: %s", exc)
        else:
            self.ceilings = ceilings
            self.peak_bandwidth.set(ceilings.bandwidth)
            self.peak_flops.set(ceilings.flops)
            self.cost = ModelCost.of(runner.model, runner.info)
        self.r.register(_MemoryCollector(runner))
        graphs = getattr(runner, "graphs", None)
        if graphs is not None:
            replay = graphs.run

            def counted(*args: Any, **kwargs: Any) -> Any:
                self._graph_replayed = True
                return replay(*args, **kwargs)

            graphs.run = counted  # NOTE: the runner's own graph path, seen without a hook in it

    def step_begin(self) -> tuple[float, Any]:
        if self.runner is not None and self.runner.device.type == "cuda":
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return time.perf_counter(), event
        return time.perf_counter(), None

    def step_end(self, step: Any, begin: tuple[float, Any]) -> None:
        """One step ran (its outputs are on the host, so the device is done with it)."""
        seconds = time.perf_counter() - begin[0]
        if begin[1] is not None:
            import torch

            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            seconds = begin[1].elapsed_time(end) / 1e3
        reqs = step.reqs
        mode = MODES.get(int(step.mode), "mixed")
        self.steps.labels(mode).inc()
        self.step_seconds.labels(mode).observe(seconds)
        self.batch_size.observe(len(reqs))
        decode = sum(1 for r in reqs if r.is_decode)
        self.tokens.labels("prefill").inc(sum(len(r.new_slots) for r in reqs) - decode)
        self.tokens.labels("decode").inc(decode)
        self.forwards.labels("cuda_graph" if self._graph_replayed else "eager").inc()
        self._graph_replayed = False
        if self.cost is not None and reqs and seconds > 0:
            self._roofline(mode, reqs, seconds)

    def _roofline(self, mode: str, reqs: list[Any], seconds: float) -> None:
        rows = self.runner.rows

        def seq_len(r: Any) -> int:
            state = rows.get(r.row)
            return state.seq_len if state is not None else len(r.new_slots)

        nbytes, flops = self.cost.step(reqs, seq_len)
        self.forward_bytes.inc(nbytes)
        self.forward_flops.inc(flops)
        self.device_seconds.inc(seconds)
        self.bandwidth_util.labels(mode).observe(nbytes / seconds / self.ceilings.bandwidth)
        self.compute_util.labels(mode).observe(flops / seconds / self.ceilings.flops)


class _MemoryCollector(Collector):
    """Device memory by use, read at scrape time."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.weights = sum(p.numel() * p.element_size() for p in runner.model.parameters())
        graphs = getattr(runner, "graphs", None)
        self.graph_buffers = 0
        if graphs is not None:
            self.graph_buffers = sum(
                t.numel() * t.element_size()
                for t in vars(graphs).values()
                if hasattr(t, "element_size")
            )

    def collect(self) -> Iterable[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "radixserve_worker_memory_bytes", "Device memory by use", labels=["use"]
        )
        kv = self.runner.kv_pool.nbytes
        g.add_metric(["weights"], self.weights)
        g.add_metric(["kv_pool"], kv)
        device = self.runner.device
        if device.type == "cuda":
            import torch

            g.add_metric(["cuda_graph_buffers"], self.graph_buffers)
            reserved = torch.cuda.memory_reserved(device)
            g.add_metric(["other"], max(0, reserved - self.weights - kv - self.graph_buffers))
            g.add_metric(["free"], torch.cuda.mem_get_info(device)[0])
        yield g
