"""On a GPU, every dense family: decode CUDA graphs (windowed indices for sliding layers, soft-caps,
per-layer scales) give the same greedy tokens as eager steps, and the torch backend on the GPU
gives transformers' greedy tokens. Tiny random models from each family's transformers class
(tests/worker/helpers.FAMILIES: a window of 8 against prompts of 11 and 22 tokens)."""

from __future__ import annotations

import pytest
import torch

from radixserve.worker.engine import ModelRunner, RunnerConfig
from tests.worker.helpers import FAMILIES, Driver, hf_greedy, save_tiny_family

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.timeout(300),
]

PROMPTS = [[1, 5, 9, 33, 2, 7, 100, 200, 3, 17, 250], [4, 5, 6], [77] * 10 + [3, 9] * 6]
NEW = 24


def _runner(path: str, backend: str, max_bs: int) -> ModelRunner:
    return ModelRunner(
        RunnerConfig(
            model=path, device="cuda", dtype="float32", attention_backend=backend,
            num_slots=1024, max_rows=4, cuda_graph_max_bs=max_bs,
        )
    )  # fmt: skip


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_decode_graphs_match_eager_and_torch_matches_transformers(name, tmp_path):
    hf_model = save_tiny_family(name, str(tmp_path))
    eager = Driver(_runner(str(tmp_path), "triton", 0)).generate(PROMPTS, NEW)[0]
    graphed_runner = _runner(str(tmp_path), "triton", 4)
    assert graphed_runner.graphs is not None
    graphed = Driver(graphed_runner).generate(PROMPTS, NEW)[0]
    assert graphed == eager, name
    torch_gpu = Driver(_runner(str(tmp_path), "torch", 0)).generate(PROMPTS, NEW)[0]
    for prompt, ours in zip(PROMPTS, torch_gpu, strict=True):
        assert ours == hf_greedy(hf_model, prompt, NEW), name
