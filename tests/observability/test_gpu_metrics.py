"""On a GPU: the live roofline's ceilings are those of a real device, decode runs as CUDA-graph
replays, device memory is reported by use, and the achieved fractions stay within the ceilings."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import openai
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from tests.stack import start_stack

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.timeout(600),
]


def _samples(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "model_name"))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


# Dummy weights of a small Llama: the GPU machine need not hold the embedded model's file.
MODEL = {"model": str(Path(__file__).resolve().parents[2] / "bench/configs/tiny-llama.json"),
         "load_format": "dummy"}  # fmt: skip


def test_gpu_roofline_graphs_and_memory():
    stack = start_stack(worker={"device": "cuda", "max_rows": 16, **MODEL})
    try:
        client = openai.OpenAI(base_url=f"{stack.http_url}/v1", api_key="x", max_retries=0)
        model = client.models.list().data[0].id
        for _ in range(3):
            client.completions.create(
                model=model, prompt="Hello " * 200, max_tokens=32, extra_body={"ignore_eos": True}
            )
        m = _samples(stack.metrics_ports["worker"])
    finally:
        stack.stop()
    bw = m[("radixserve_worker_peak_memory_bandwidth_bytes_per_second", ())]
    flops = m[("radixserve_worker_peak_matmul_flops_per_second", ())]
    assert 3e11 < bw < 2e13 and 2e13 < flops < 5e15, (bw, flops)  # any datacenter GPU
    assert m[("radixserve_worker_forwards_total", (("path", "cuda_graph"),))] >= 3 * 30
    for use in ("weights", "kv_pool", "free", "other"):
        assert m[("radixserve_worker_memory_bytes", (("use", use),))] > 0, use
    for hist in ("memory_bandwidth", "matmul"):
        for mode in ("prefill", "decode"):
            key = (("mode", mode),)
            n = m[(f"radixserve_worker_{hist}_utilization_ratio_count", key)]
            mean = m[(f"radixserve_worker_{hist}_utilization_ratio_sum", key)] / n
            assert 0 < mean < 1.2, (hist, mode, mean)  # a step cannot beat the ceiling by much
