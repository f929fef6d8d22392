"""The Triton attention backend and ops (CPU: Triton's interpreter) match the torch path."""

from __future__ import annotations

import importlib

import pytest
import torch

from radixserve.worker.cuda_graph import DecodeGraphs
from radixserve.worker.engine import ModelRunner, RunnerConfig
from radixserve.worker.runner_config import pick_backend, pick_ops
from tests.worker.helpers import Driver

pytest.importorskip("triton")

PROMPTS = [[5, 6, 7, 8, 9, 10, 11, 12, 13], [100, 3], [42] * 5]


def _interpreted() -> bool:
    """Were the kernels decorated under TRITON_INTERPRET=1 (the env var is read at import)?"""
    module = importlib.import_module("radixserve_kernels.decode_attention")
    return type(module._decode_stage1_kernel).__name__ == "InterpretedFunction"


@pytest.fixture
def triton_runner(tiny_models):
    if not torch.cuda.is_available() and not _interpreted():
        pytest.skip("needs a GPU or TRITON_INTERPRET=1 set before kernels are imported")
    path, _ = tiny_models["llama3_rope"]
    runner = ModelRunner(
        RunnerConfig(model=path, num_slots=512, max_rows=4, attention_backend="triton")
    )
    return runner


def test_triton_matches_torch(tiny_models, triton_runner):
    path, _ = tiny_models["llama3_rope"]
    torch_runner = ModelRunner(RunnerConfig(model=path, num_slots=512, max_rows=4))
    # Two models in one process, each with its own ops (chosen per model, not process-wide).
    assert triton_runner.attn_backend.name == "triton" and triton_runner.ops.name == "triton"
    assert torch_runner.attn_backend.name == "torch" and torch_runner.ops.name == "torch"
    assert triton_runner.model.model.norm.ops.name == "triton"
    assert torch_runner.model.model.norm.ops.name == "torch"
    # Chunked prefill exercises extend attention over a cached prefix; then decode steps.
    got, slots = Driver(triton_runner).generate(PROMPTS, 6, chunk=4)
    expected, _ = Driver(torch_runner).generate(PROMPTS, 6, chunk=4)
    assert got == expected
    # Prefix reuse through the Triton path, after the torch model ran in between.
    shared = slots[0][:8]
    got, _ = Driver(triton_runner, 300).generate([PROMPTS[0]], 4, prefixes=[shared])
    assert got[0] == expected[0][:4]


class _EagerGraphs(DecodeGraphs):
    """Runs what a decode graph records (static buffers, padding, the backend's
    ``prepare_captured_decode``) without capturing it, so the graph path is checked on CPU."""

    def capture_all(self) -> None:
        raise AssertionError("CPU: nothing to capture")

    def run(self, ctx):
        return self._forward(self._context(self._stage(ctx)))[: ctx.batch_size]


def test_decode_graph_body_matches_torch(tiny_models, triton_runner):
    r = triton_runner
    r.graphs = _EagerGraphs(r.model, r.attn_backend, r.kv_pool, r.req_to_token, 4)
    assert r.graphs.sizes == [1, 2, 4] and r.graphs.pad_row == 4
    path, _ = tiny_models["llama3_rope"]
    torch_runner = ModelRunner(RunnerConfig(model=path, num_slots=512, max_rows=4))
    expected, _ = Driver(torch_runner).generate(PROMPTS, 3)
    staged = []
    stage = r.graphs._stage
    r.graphs._stage = lambda ctx: staged.append(stage(ctx)) or staged[-1]
    got, _ = Driver(r).generate(PROMPTS, 3)  # three rows: every decode step pads to four
    assert got == expected
    assert staged == [4, 4, 1]  # the last step decodes one row while releasing all


def test_triton_unavailable_on_plain_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert pick_backend("triton", torch.device("cpu")).name == "torch"
    assert pick_ops("triton", "torch", torch.device("cpu")) == "torch"
    assert pick_ops(None, "triton", torch.device("cpu")) == "torch"
