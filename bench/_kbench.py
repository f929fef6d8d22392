"""Timing and ceiling helpers for bench/bench_kernels.py (kernels only)."""

from __future__ import annotations

import json
import math
import os
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import triton
import triton.testing

MiB = 1 << 20


def bench_ms(fn: Callable[[], object]) -> float:
    """Median ms per call; triton's do_bench clears L2 before every timed call."""
    return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))


def bench_graph_ms(fns: list[Callable[[], object]], reps: int = 30) -> float:
    """Median ms per call of a CUDA graph that runs every fn once, back to back.

    Launch overhead disappears (as in a CUDA-graph decode step). Each fn should read its own input
    set, together larger than L2, so the replays do not time a warm cache.
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for fn in fns:
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for fn in fns:
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / len(fns))
    del graph
    return statistics.median(times)


def rotation_sets(bytes_per_set: int, total: int = 200 * MiB, most: int = 64) -> int:
    """How many distinct input sets make a graph's working set exceed L2 (50 MB on an H100)."""
    return max(1, min(most, math.ceil(total / max(bytes_per_set, 1))))


@dataclass
class Ceilings:
    copy_gbps: float
    matmul_tflops: float


def _copy_gbps() -> float:
    src = torch.randn(1 << 29, device="cuda", dtype=torch.bfloat16)  # 1 GiB
    dst = torch.empty_like(src)
    ms = bench_ms(lambda: dst.copy_(src))
    return 2 * src.numel() * src.element_size() / ms / 1e6


def _matmul_tflops() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = bench_ms(lambda: a @ b)
    return 2 * 8192**3 / ms / 1e9


def measure_ceilings() -> Ceilings:
    return Ceilings(copy_gbps=_copy_gbps(), matmul_tflops=_matmul_tflops())


@dataclass
class Row:
    kernel: str
    case: str
    impl: str
    ms: float | None
    bytes: int = 0
    flops: int = 0
    gbps: float | None = None
    tflops: float | None = None
    frac_copy: float | None = None
    frac_matmul: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    def finish(self, ceil: Ceilings) -> Row:
        if self.ms:
            if self.bytes:
                self.gbps = self.bytes / self.ms / 1e6
                self.frac_copy = self.gbps / ceil.copy_gbps
            if self.flops:
                self.tflops = self.flops / self.ms / 1e9
                self.frac_matmul = self.tflops / ceil.matmul_tflops
        return self

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        ms = f"{self.ms * 1000:9.1f}us" if self.ms else "     error"
        rate = ""
        if self.gbps is not None:
            rate += f" {self.gbps:7.0f} GB/s {100 * self.frac_copy:5.1f}%copy"
        if self.tflops is not None:
            rate += f" {self.tflops:6.1f} TF/s {100 * self.frac_matmul:5.1f}%mm"
        return f"{self.kernel:18s} {self.case:22s} {self.impl:24s} {ms}{rate} {self.note}"


class Runner:
    """Runs and records the rows of one benchmark script against the measured ceilings."""

    def __init__(self, ceil: Ceilings, quick: bool) -> None:
        self.ceil = ceil
        self.quick = quick
        self.rows: list[Row] = []

    def add(self, row: Row, fn=None, graph_fns=None) -> Row:
        try:
            if graph_fns is not None:
                row.ms = bench_graph_ms(graph_fns)
            elif fn is not None:
                row.ms = bench_ms(fn)
        except Exception as exc:  # a failing variant (e.g. out of shared memory) is a result too
            row.ms = None
            row.note = (row.note + f" ERROR {type(exc).__name__}: {exc}")[:300]
        row.finish(self.ceil)
        self.rows.append(row)
        print(row.line(), flush=True)
        return row

    def run(self, sections: dict[str, Callable[[Runner], None]], names: list[str]) -> None:
        """Each named section in turn; a failing one is reported and the rest still run."""
        for name in names:
            try:
                sections[name](self)
            except Exception:
                traceback.print_exc()
            torch.cuda.empty_cache()


def gpu_slug(name: str) -> str:
    """A short tag of the GPU's name for result file names (``h200``)."""
    for tag in ("H100", "H200", "A100", "L40S", "B200"):
        if tag in name:
            return tag.lower()
    return name.split()[-1].lower()


def write_results(
    prefix: str, gpu: str, ceil: Ceilings, runner: Runner, t0: float, out: str | None, **extra
) -> str:
    """One benchmark run as JSON (``bench/results/<prefix>-<gpu>.json`` unless ``out``)."""
    result = {
        "gpu": gpu,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "ceilings": {"copy_gbps": ceil.copy_gbps, "matmul_tflops": ceil.matmul_tflops},
        "rows": [row.as_dict() for row in runner.rows],
        **extra,
        "wall_s": time.time() - t0,
    }
    here = os.path.dirname(__file__)
    path = out or os.path.join(here, "results", f"{prefix}-{gpu_slug(gpu)}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return path
