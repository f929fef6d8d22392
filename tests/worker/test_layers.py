"""Layers, sampler, registries and loaders in isolation."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from radixserve.common.model_source import ModelSource
from radixserve.common.types import SamplingParams
from radixserve.worker.attention import get_backend_class
from radixserve.worker.cuda_graph import DecodeGraphs
from radixserve.worker.layers import (
    ColumnParallelLinear,
    MergedColumnParallelLinear,
    QKVParallelLinear,
    RowParallelLinear,
)
from radixserve.worker.layers.linear import CPU_SMALL_ROWS, linear
from radixserve.worker.layers.ops import get_ops
from radixserve.worker.layers.rotary import RotaryEmbedding
from radixserve.worker.loader import dummy, load_model
from radixserve.worker.model_config import ModelConfig
from radixserve.worker.models import get_model_class
from radixserve.worker.rows import RowTable
from radixserve.worker.runner_config import pick_backend
from radixserve.worker.sampling import Sampler
from radixserve_kernels.rotary_embedding import rope_inv_freq
from tests.worker.conftest import LLAMA3_SCALING


@pytest.mark.parametrize("rows", [1, 2, 8, CPU_SMALL_ROWS, CPU_SMALL_ROWS + 1])
@pytest.mark.parametrize("out_features", [96, 50])  # 50: not a multiple of the row blocks
@pytest.mark.parametrize("bias", [False, True])
def test_cpu_small_batch_linear_matches_f_linear(rows, out_features, bias):
    g = torch.Generator().manual_seed(rows * 1000 + out_features)
    x = torch.randn(rows, 40, generator=g)
    w = torch.randn(out_features, 40, generator=g)
    b = torch.randn(out_features, generator=g) if bias else None
    ref = torch.nn.functional.linear(x, w, b)
    y = linear(x, w, b)
    assert y.shape == ref.shape and y.is_contiguous()
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    # A transposed (non-contiguous) weight view and a 3-D input take F.linear.
    wt = w.t().contiguous().t()
    torch.testing.assert_close(linear(x, wt, b), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(linear(x[None], w, b)[0], ref, rtol=1e-5, atol=1e-5)


def test_llama3_inv_freq_matches_transformers():
    params = {**LLAMA3_SCALING, "rope_theta": 500000.0}
    cfg = LlamaConfig(hidden_size=2048, num_attention_heads=16, rope_parameters=params)
    ref, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    ours = rope_inv_freq(128, 500000.0, LLAMA3_SCALING).float()
    torch.testing.assert_close(ours, ref.float())
    assert not torch.allclose(ours, rope_inv_freq(128, 500000.0, None).float())
    linear = rope_inv_freq(128, 500000.0, {"rope_type": "linear", "factor": 4.0})
    torch.testing.assert_close(linear * 4.0, rope_inv_freq(128, 500000.0, None))


def test_rotary_matches_hf_rotate_half():
    torch.manual_seed(0)
    rope = RotaryEmbedding(head_dim=32, max_position=64, base=10000.0)
    q, k, pos = torch.randn(5, 4, 32), torch.randn(5, 2, 32), torch.tensor([0, 3, 7, 63, 1])
    ours_q, ours_k = rope(pos, q.clone(), k.clone())  # rotated in place
    cos, sin = rope.cos_sin_cache[pos].chunk(2, dim=-1)
    cos, sin = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)
    ref_q, ref_k = apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1)
    torch.testing.assert_close(ours_q, ref_q)
    torch.testing.assert_close(ours_k, ref_k)


def _init(layer):
    for p in layer.parameters():
        p.data.zero_()
    return layer


def test_fused_loaders_place_shards():
    qkv = _init(QKVParallelLinear(8, head_dim=2, num_heads=4, num_kv_heads=2))
    for i, sid in enumerate("qkv"):
        rows = 8 if sid == "q" else 4
        qkv.weight.weight_loader(qkv.weight, torch.full((rows, 8), float(i + 1)), sid)
    assert qkv.weight[:, 0].tolist() == [1.0] * 8 + [2.0] * 4 + [3.0] * 4
    gate_up = _init(MergedColumnParallelLinear(4, [3, 3]))
    gate_up.weight.weight_loader(gate_up.weight, torch.ones(3, 4), 1)
    assert gate_up.weight[:, 0].tolist() == [0.0] * 3 + [1.0] * 3
    with pytest.raises(ValueError, match="shape mismatch"):
        gate_up.weight.weight_loader(gate_up.weight, torch.ones(4, 4), 0)


def test_tensor_parallel_sharding_reconstructs_the_full_layer():
    """Two emulated ranks: column shards concatenate, row shards sum to the unsharded output."""
    torch.manual_seed(0)
    w_col, w_row, x = torch.randn(6, 4), torch.randn(4, 6), torch.randn(3, 4)
    cols, rows = [], []
    for rank in range(2):
        col = ColumnParallelLinear(4, 6, tp_rank=rank, tp_size=2)
        col.weight.weight_loader(col.weight, w_col)
        row = RowParallelLinear(6, 4, tp_rank=rank, tp_size=2)
        row.weight.weight_loader(row.weight, w_row)
        cols.append(col(x))
        rows.append(row(cols[-1]))
    full = torch.cat(cols, dim=-1)
    torch.testing.assert_close(full, x @ w_col.T)
    torch.testing.assert_close(rows[0] + rows[1], full @ w_row.T)


def test_sampler():
    sampler = Sampler(torch.device("cpu"), seed=0)
    logits = torch.tensor([[0.0, 5.0, 4.9, -1.0]] * 4)
    params = [
        SamplingParams(temperature=0.0),
        SamplingParams(temperature=1.0, top_k=1),
        SamplingParams(temperature=1.0, top_p=1e-6),
        SamplingParams(temperature=100.0, top_k=2, logprobs=True),
    ]
    for _ in range(20):
        ids, lps = sampler.sample(logits, params, [None] * 4)
        assert ids[:3].tolist() == [1, 1, 1] and ids[3].item() in (1, 2)
        assert lps[0] == pytest.approx(torch.log_softmax(logits[0], -1)[1].item())


def test_seeded_rows_draw_from_their_seed():
    """A row's generator comes from its ``SamplingParams.seed``: the same seed draws the same
    tokens whatever the shared generator did meanwhile, another seed draws others."""
    sampler = Sampler(torch.device("cpu"), seed=0)
    rows = RowTable(2, torch.device("cpu"))
    logits = torch.randn(1, 1000, generator=torch.Generator().manual_seed(0))
    unseeded = SamplingParams(temperature=1.0)
    assert rows.start(1, unseeded, 0).generator is None

    def draws(seed: int | None) -> list[int]:
        state = rows.start(0, SamplingParams(temperature=1.0, seed=seed), 0)
        sampler.sample(logits, [unseeded], [None])  # moves the shared generator on
        return [
            sampler.sample(logits, [state.sampling], [state.generator])[0].item() for _ in range(10)
        ]

    first = draws(7)
    assert draws(7) == first and len(set(first)) > 1
    assert draws(8) != first
    assert draws(None) != draws(None)  # unseeded rows share the sampler's moving generator


def test_registries_list_known_names():
    with pytest.raises(ValueError, match="known: LlamaForCausalLM"):
        get_model_class("GPT2LMHeadModel")
    with pytest.raises(ValueError, match="known: torch, triton"):
        get_backend_class("flash")
    assert pick_backend("torch", torch.device("cpu")).name == "torch"
    with pytest.raises(ValueError, match="known: torch, triton"):
        get_ops("cuda")


def test_model_config_reads_both_rope_styles():
    base = {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 8}
    base |= {"num_hidden_layers": 1, "vocab_size": 10}
    old = ModelConfig.from_hf_dict({**base, "rope_theta": 5e5, "rope_scaling": LLAMA3_SCALING})
    new = ModelConfig.from_hf_dict(
        {**base, "rope_parameters": {**LLAMA3_SCALING, "rope_theta": 5e5}}
    )
    assert old.rope_theta == new.rope_theta == 5e5
    assert old.rope_scaling["factor"] == new.rope_scaling["factor"] == 8.0
    assert old.num_kv_heads == 4 and old.head_dim == 16


def test_dummy_loader(tmp_path):
    cfg = {**dummy.EMBEDDED_SHAPES.to_hf_dict(), "num_hidden_layers": 2, "vocab_size": 300}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    model, config = load_model(ModelSource("dummy", str(tmp_path), "x"), torch.float32, "cpu")
    assert config.num_layers == 2 and config.vocab_size == 300
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert float(model.model.norm.weight.mean()) == 1.0
    assert 0 < float(model.model.layers[0].mlp.down_proj.weight.abs().max()) <= 0.02
    assert dummy.read_config("") == dummy.EMBEDDED_SHAPES


def test_cuda_graph_hooks_are_part_of_every_backend(tiny_runner):
    """The torch backend implements the graph hooks by refusing them, with a clear error."""
    backend = tiny_runner.attn_backend
    assert backend.name == "torch" and not backend.supports_cuda_graphs
    with pytest.raises(NotImplementedError, match="cannot run in a CUDA graph"):
        backend.init_cuda_graph_state(4, 64)
    with pytest.raises(ValueError, match="torch attention backend does not support CUDA graphs"):
        DecodeGraphs(tiny_runner.model, backend, tiny_runner.kv_pool, tiny_runner.req_to_token, 4)
    for cls in (get_backend_class("torch"), get_backend_class("triton")):
        assert not cls.__abstractmethods__
