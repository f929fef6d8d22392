from __future__ import annotations

import os

import pytest
import torch

# NOTE: read when kernels are decorated, so before anything imports ``kernels`` (transformers may).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


from radixserve.worker.engine import ModelRunner, RunnerConfig
from tests.worker.helpers import save_tiny_llama

LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}

TINY_VARIANTS = {
    "tied": {},
    "untied": {"tie_word_embeddings": False},
    "llama3_rope": {"rope_scaling": LLAMA3_SCALING, "tie_word_embeddings": False},
}


@pytest.fixture(scope="session", autouse=True)
def _one_cpu_thread():
    """NOTE: on a shared CI box, intra-op threads that oversubscribe the cores spin and make the
    forward 10-20x slower; these tests measure correctness, not speed."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """name -> (hf dir, transformers model) for each tiny variant."""
    out = {}
    for i, (name, kw) in enumerate(TINY_VARIANTS.items()):
        path = str(tmp_path_factory.mktemp(f"tiny_{name}"))
        out[name] = (path, save_tiny_llama(path, seed=i, **kw))
    return out


@pytest.fixture(scope="session")
def tiny_runner(tiny_models) -> ModelRunner:
    path, _ = tiny_models["tied"]
    return ModelRunner(RunnerConfig(model=path, num_slots=4096, max_rows=16, max_context_len=256))


@pytest.fixture(scope="session")
def embedded_runner() -> ModelRunner:
    return ModelRunner(RunnerConfig(num_slots=2048, max_rows=8, max_context_len=512))
