"""Greedy token-for-token parity with transformers' LlamaForCausalLM on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

from radixserve.common.model_source import embedded_gguf_path
from radixserve.common.types import ForwardMode, ReqInput, SamplingParams, StepInput
from radixserve.worker.engine import ModelRunner, RunnerConfig
from radixserve.worker.loader import gguf as gguf_loader
from tests.worker.conftest import TINY_VARIANTS
from tests.worker.helpers import Driver, hf_greedy, hf_greedy_batch

PROMPTS = [[1, 5, 9, 33, 2, 7, 100, 200, 3, 17, 250], [4, 5, 6], [77] * 20 + [3, 9]]


@pytest.mark.parametrize("variant", list(TINY_VARIANTS))
def test_tiny_llama_matches_transformers(tiny_models, variant):
    path, hf_model = tiny_models[variant]
    runner = ModelRunner(RunnerConfig(model=path, num_slots=1024, max_rows=4))
    gen, _ = Driver(runner).generate(PROMPTS, max_new=16)
    for prompt, ours in zip(PROMPTS, gen, strict=True):
        assert ours == hf_greedy(hf_model, prompt, 16)


def test_tiny_llama_logprob_matches_transformers(tiny_models):
    """Beyond argmax: the chosen token's logprob agrees with transformers' to float32 precision."""
    path, hf_model = tiny_models["llama3_rope"]
    runner = ModelRunner(RunnerConfig(model=path, num_slots=256, max_rows=2))
    prompt = PROMPTS[0]
    params = SamplingParams(temperature=0.0, logprobs=True)
    req = ReqInput(0, list(range(1, len(prompt) + 1)), prompt, None, params)
    out = runner.step(StepInput(0, ForwardMode.EXTEND, [req]))
    with torch.no_grad():
        ref = torch.log_softmax(hf_model(torch.tensor([prompt])).logits[0, -1], dim=-1)
    assert out.token_ids[0] == int(ref.argmax())
    assert abs(out.logprobs[0] - float(ref.max())) < 1e-4


def test_unpermute_matches_transformers():
    """Our q/k un-permute equals transformers' own GGUF reverse permutation."""
    rng = np.random.default_rng(0)
    proc = LlamaTensorProcessor(config={"num_attention_heads": 9, "num_key_value_heads": 3})
    q = rng.standard_normal((576, 40)).astype(np.float32)
    k = rng.standard_normal((192, 40)).astype(np.float32)
    ours_q, ours_k = gguf_loader.unpermute_qk(q, 9), gguf_loader.unpermute_qk(k, 3)
    assert not np.array_equal(ours_q, q)
    assert np.array_equal(ours_q, proc.process(q, "blk.0.attn_q.weight").weights)
    assert np.array_equal(ours_k, proc.process(k, "blk.0.attn_k.weight").weights)


def test_embedded_gguf_matches_transformers(embedded_runner):
    hf_model = gguf_loader.transformers_llama(embedded_gguf_path())
    prompts = [
        [1, 504, 3458, 282, 4649, 314],
        [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 30],
        [28, 339, 5248, 2367],
    ]
    rows = [3, 0, 5]  # any rows; batched together with different lengths
    gen, _ = Driver(embedded_runner).generate(prompts, max_new=16, rows=rows)
    assert gen == hf_greedy_batch(hf_model, prompts, 16)
