"""GGUF files of the families llama.cpp exports (qwen2, qwen3, phi3, gemma2, gemma3), written as
its converter does: gguf-py's own HF -> GGUF tensor-name map, no q/k permutation for these
architectures, Gemma's norm weights stored as 1 + w, Phi-3's fused tensors kept fused. Loaded by
our GGUF loader they generate transformers' greedy tokens on the same weights (16 new tokens, a
prompt longer than the window)."""

from __future__ import annotations

import os

import gguf
import pytest

from radixserve.worker.engine import ModelRunner, RunnerConfig
from radixserve.worker.loader import gguf as gguf_loader
from tests.worker.helpers import Driver, hf_greedy, save_tiny_family

pytestmark = pytest.mark.timeout(300)

PROMPTS = [[1, 5, 9, 33, 2, 7, 100, 200, 3, 17, 250], [4, 5, 6]]
ARCHS = {
    "qwen2": gguf.MODEL_ARCH.QWEN2,
    "qwen3": gguf.MODEL_ARCH.QWEN3,
    "phi3": gguf.MODEL_ARCH.PHI3,
    "gemma2": gguf.MODEL_ARCH.GEMMA2,
    "gemma3": gguf.MODEL_ARCH.GEMMA3,
}
# What GGUF cannot say, as llama.cpp assumes it: no window for qwen2, no LongRoPE factors here,
# Gemma's attention scale from head_dim, Gemma 3's five-sliding-to-one-full pattern.
GGUF_OVERRIDES = {
    "qwen2": {"use_sliding_window": False},
    "phi3": {"rope_scaling": None},
    "gemma2": {"query_pre_attn_scalar": 32},
    "gemma3": {"query_pre_attn_scalar": 32, "layer_types": None, "num_hidden_layers": 6},
}


def _write_gguf(hf_model, arch_name: str, path: str) -> None:
    c = hf_model.config
    names = gguf.get_tensor_name_map(ARCHS[arch_name], c.num_hidden_layers)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    rope = c.rope_parameters.get("full_attention", c.rope_parameters)
    w = gguf.GGUFWriter(path, arch_name)
    w.add_vocab_size(c.vocab_size)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(rope["rope_theta"])
    if getattr(c, "sliding_window", None) is not None:
        w.add_sliding_window(c.sliding_window)
    if arch_name == "phi3":
        w.add_rope_dimension_count(int(head_dim * c.rope_parameters["partial_rotary_factor"]))
    if arch_name == "gemma2":
        w.add_attn_logit_softcapping(c.attn_logit_softcapping)
        w.add_final_logit_softcapping(c.final_logit_softcapping)
    if arch_name == "gemma3" and rope.get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope["factor"])
    for name, t in hf_model.state_dict().items():
        if c.tie_word_embeddings and name == "lm_head.weight":
            continue
        out = names.get_name(name, try_suffixes=(".weight", ".bias"))
        assert out is not None, name
        arr = t.float().numpy().copy()
        if arch_name.startswith("gemma") and name.endswith("norm.weight"):
            arr = arr + 1.0  # convert_hf_to_gguf's Gemma norms
        w.add_tensor(out, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("name", list(ARCHS))
def test_family_gguf_matches_transformers(name, tmp_path):
    hf_model = save_tiny_family(name, str(tmp_path / "hf"), **GGUF_OVERRIDES.get(name, {}))
    path = os.path.join(str(tmp_path), f"{name}.gguf")
    _write_gguf(hf_model, name, path)
    config = gguf_loader.open_gguf(path)[1]
    assert config.architecture == hf_model.config.architectures[0]
    runner = ModelRunner(RunnerConfig(model=path, num_slots=256, max_rows=2))
    gen, _ = Driver(runner).generate(PROMPTS, 16)
    for prompt, ours in zip(PROMPTS, gen, strict=True):
        assert ours == hf_greedy(hf_model, prompt, 16)


def test_unknown_gguf_architecture_names_the_known_ones(tmp_path):
    path = str(tmp_path / "x.gguf")
    w = gguf.GGUFWriter(path, "mamba")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    with pytest.raises(ValueError, match="'mamba' is not supported; known: llama, qwen2, qwen3"):
        gguf_loader.open_gguf(path)
