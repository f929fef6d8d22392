"""Every dense family at TP=2 over gloo generates the TP=1 greedy tokens (32 new, prompts longer
than the sliding window), through the real leader/follower path: 4 query / 2 KV heads split one
KV head per rank, Phi-3's fused checkpoint tensors cut per rank, Gemma's final soft-cap on rank 0.
fp32 on gloo: the all-reduce may change the last bits, so greedy tokens (not logits) are compared.
"""

from __future__ import annotations

import json

import pytest

from radixserve.worker.engine import ModelRunner, RunnerConfig
from tests.worker.helpers import FAMILIES, save_tiny_family
from tests.worker.tp_helpers import greedy, rank_generate, run_ranks

pytestmark = pytest.mark.timeout(300)

PROMPTS = [[1, 5, 9, 33, 2, 7, 100, 200, 3, 17, 250], [4, 5, 6, 7]]
NEW_TOKENS = 32


def _tp_matches_tp1(tp: int, names: list[str], tmp_path) -> None:
    specs = {}
    for name in names:
        path = str(tmp_path / name)
        save_tiny_family(name, path, seed=10 + list(FAMILIES).index(name))
        specs[name] = {"model": path, "num_slots": 512, "max_rows": 4, "max_context_len": 128}
    want = {
        n: greedy(ModelRunner(RunnerConfig(**kw)), PROMPTS, NEW_TOKENS) for n, kw in specs.items()
    }
    out = str(tmp_path / f"tp{tp}.json")
    run_ranks(rank_generate, tp, specs, PROMPTS, NEW_TOKENS, out)
    with open(out) as f:
        assert json.load(f) == want


def test_every_family_tp2_greedy_parity(tmp_path):
    _tp_matches_tp1(2, list(FAMILIES), tmp_path)


def test_replicated_kv_heads_tp4_greedy_parity(tmp_path):
    """TP=4 over 2 KV heads: each KV head replicated on two ranks (Phi-3's fused qkv cut by head
    index, Gemma 2's soft-caps and alternating windows)."""
    _tp_matches_tp1(4, ["phi3", "gemma2"], tmp_path)
