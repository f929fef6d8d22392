"""Each parallel layer on 2 and 4 gloo ranks equals the unsharded layer (run by test_tp_parity's
spawns, see :func:`layers_then_generate`); collective timeouts; refused head counts."""

from __future__ import annotations

import os
import time

import pytest
import torch

from radixserve.worker.layers import (
    ColumnParallelLinear,
    LMHead,
    MergedColumnParallelLinear,
    QKVParallelLinear,
    RowParallelLinear,
    VocabEmbedding,
)
from radixserve.worker.model_config import ModelConfig
from radixserve.worker.parallel import check_tp
from tests.worker.tp_helpers import rank_generate, run_ranks

pytestmark = pytest.mark.timeout(120)

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB = 16, 8, 2, 4, 24, 250  # 250: padded at TP=4


def _full(layer: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Deterministic full-shape weights (the same on every rank) loaded via ``full_loader``."""
    gen = torch.Generator().manual_seed(seed)
    fulls = {}
    for name, p in layer.named_parameters():
        fulls[name] = torch.randn(p.full_shape, generator=gen)
        p.full_loader(p, fulls[name])
    return fulls


def _pair(make, seed: int, group):
    """The unsharded layer and this rank's shard, with the same weights."""
    ref, shard = make(None), make(group)
    _full(ref, seed), _full(shard, seed)
    return ref, shard


def _check_layers(group) -> None:
    x = torch.randn(5, HIDDEN, generator=torch.Generator().manual_seed(1))

    ref, col = _pair(lambda g: ColumnParallelLinear(HIDDEN, FFN, bias=True, group=g), 2, group)
    torch.testing.assert_close(group.all_gather(col(x)), ref(x))

    ref, mer = _pair(lambda g: MergedColumnParallelLinear(HIDDEN, [FFN] * 2, group=g), 3, group)
    want = [p.chunk(group.size, -1)[group.rank] for p in ref(x).chunk(2, -1)]
    torch.testing.assert_close(mer(x), torch.cat(want, -1))

    ref, qkv = _pair(
        lambda g: QKVParallelLinear(HIDDEN, HEAD_DIM, HEADS, KV_HEADS, bias=True, group=g), 4, group
    )
    q, k, v = ref(x).split([HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM], -1)
    kv_rank = group.rank * KV_HEADS // group.size  # the KV head(s) this rank's queries use
    kv_cols = slice(kv_rank * HEAD_DIM, kv_rank * HEAD_DIM + qkv.kv_size)
    want = torch.cat([q.chunk(group.size, -1)[group.rank], k[:, kv_cols], v[:, kv_cols]], -1)
    torch.testing.assert_close(qkv(x), want)

    h = torch.randn(5, FFN, generator=torch.Generator().manual_seed(5))
    ref, row = _pair(lambda g: RowParallelLinear(FFN, HIDDEN, bias=True, group=g), 6, group)
    torch.testing.assert_close(row(h.chunk(group.size, -1)[group.rank]), ref(h))

    ids = torch.tensor([0, 7, 63, 64, 125, 190, 249])
    ref, emb = _pair(lambda g: VocabEmbedding(VOCAB, HIDDEN, group=g), 7, group)
    torch.testing.assert_close(emb(ids), ref(ids))

    ref, head = _pair(lambda g: LMHead(VOCAB, HIDDEN, group=g), 8, group)
    logits = head(x)
    if group.rank == 0:
        torch.testing.assert_close(logits, ref(x))
    else:
        assert logits is None

    assert group.min_int(100 + group.rank) == 100
    assert group.broadcast_object({"step": group.rank}) == {"step": 0}


def layers_then_generate(group, *args) -> None:
    """The layer checks, then :func:`rank_generate` on the same ranks.

    NOTE: ``test_tp_parity`` runs this at TP=2 and TP=4: starting gloo ranks costs more than
    the checks, so both share one spawn per TP size (this module imports no transformers).
    """
    _check_layers(group)
    rank_generate(group, *args)


def _hung_peer(group) -> None:
    if group.rank == 1:
        time.sleep(6)  # alive but silent: no connection closes, only the timeout can tell
        os._exit(0)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="[Tt]imed out"):
        group.all_reduce(torch.ones(4))
    assert time.monotonic() - start < 5
    os._exit(0)  # NOTE: skip tearing down a broken group


def test_collective_on_a_hung_rank_fails_within_the_timeout():
    run_ranks(_hung_peer, 2, timeout_s=2)


def test_indivisible_head_count_is_refused_naming_both_numbers():
    c = ModelConfig("LlamaForCausalLM", 100, 64, 144, 1, num_heads=9, num_kv_heads=3, head_dim=8)
    with pytest.raises(ValueError, match=r"size 2 .* 9 attention heads"):
        check_tp(c, 2)
    with pytest.raises(ValueError, match=r"size 9 and the model's 6 KV heads"):
        check_tp(ModelConfig("L", 100, 64, 128, 1, 18, 6, 8), 9)
    check_tp(c, 3)
    check_tp(c, 9)  # KV heads replicated 3 ways
