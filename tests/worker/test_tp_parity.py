"""Greedy tokens at TP=1 and TP>1 agree (32 new tokens), through the real leader/follower path.

Rank 0 drives a :class:`LeaderRunner` (each step broadcast, then run on every rank, rank 0
samples); the other ranks run ``follower_loop``, as in a served worker. fp32 on gloo: the
all-reduce may change the last bits, so greedy tokens (not logits) are compared.
"""

from __future__ import annotations

import json
import os

import pytest

from radixserve.worker.engine import ModelRunner, RunnerConfig
from tests.worker.helpers import save_tiny_llama
from tests.worker.test_tp_layers import layers_then_generate
from tests.worker.tp_helpers import greedy, rank_generate, run_ranks, save_tiny_gguf

pytestmark = pytest.mark.timeout(240)

PROMPTS = [[1, 5, 9, 33, 2, 7, 100, 200, 3, 17, 250], [4, 5, 6, 7]]
NEW_TOKENS = 32
TINY = {"num_attention_heads": 8, "num_key_value_heads": 2, "hidden_size": 64}


def _generate(runner, prompts: list[list[int]]) -> list[list[int]]:
    return greedy(runner, prompts, NEW_TOKENS)


def _tp_tokens(tp: int, specs: dict[str, dict], prompts, tmp_path, fn=rank_generate) -> dict:
    out = str(tmp_path / f"tp{tp}.json")
    run_ranks(fn, tp, specs, prompts, NEW_TOKENS, out)
    with open(out) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def tiny_specs(tmp_path_factory) -> dict[str, dict]:
    path = str(tmp_path_factory.mktemp("tiny_8_2"))
    hf_model = save_tiny_llama(path, seed=3, **TINY)
    gguf_path = os.path.join(path, "tiny.gguf")
    save_tiny_gguf(hf_model, gguf_path)
    base = {"model": path, "num_slots": 512, "max_rows": 4, "max_context_len": 128}
    return {
        "hf": base,
        "gguf": {**base, "model": gguf_path},
        "dummy": {**base, "load_format": "dummy", "seed": 5},
    }


@pytest.fixture(scope="module")
def tiny_reference(tiny_specs) -> dict[str, list]:
    ref = {n: _generate(ModelRunner(RunnerConfig(**kw)), PROMPTS) for n, kw in tiny_specs.items()}
    assert ref["gguf"] == ref["hf"]  # the GGUF file holds the same model
    return ref


@pytest.mark.parametrize("tp", [2, 4])
def test_parallel_layers_and_tiny_llama_greedy_parity(tp, tiny_specs, tiny_reference, tmp_path):
    """Each parallel layer equals the unsharded one; then 8 query / 2 KV heads (KV heads split at
    TP=2, replicated at TP=4) generate the TP=1 tokens through every loader."""
    got = _tp_tokens(tp, tiny_specs, PROMPTS, tmp_path, layers_then_generate)
    assert got == tiny_reference


def test_embedded_smollm2_tp3_greedy_parity(embedded_runner, tmp_path):
    """9 query / 3 KV heads at TP=3, through the GGUF loader (the embedded Q4_1 file)."""
    prompts = [[1, 504, 3458, 282, 4649, 314], [28, 339, 5248, 2367]]
    want = _generate(embedded_runner, prompts)
    spec = {"num_slots": 2048, "max_rows": 8, "max_context_len": 512}
    assert _tp_tokens(3, {"gguf": spec}, prompts, tmp_path) == {"gguf": want}
