"""Load a GGUF file (llama, qwen2, qwen3, phi3, gemma2, gemma3): config from metadata, dequantized
weights in HF names.

For ``llama`` llama.cpp's converter permutes the rows of q and k for its interleaved rotary
layout; we undo it (:func:`unpermute_qk`) so the model runs the HF (neox, rotate_half) layout.
Qwen2/Qwen3 are written unpermuted (their RoPE is neox in llama.cpp too).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import gguf
import numpy as np
import torch

from radixserve.worker.loader.progress import log_progress
from radixserve.worker.model_config import ModelConfig

logger = logging.getLogger(__name__)

# GGUF tensor name -> HF name ("{}" is the layer index). Fusion happens later, in the model.
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_q_norm": "self_attn.q_norm",  # qwen3
    "attn_k_norm": "self_attn.k_norm",
}
# Per architecture, the names that differ from Llama's (fused Phi-3, Gemma's four norms).
_ARCH_LAYER_NAMES = {
    "phi3": {"attn_qkv": "self_attn.qkv_proj", "ffn_up": "mlp.gate_up_proj"},
    "gemma2": {
        "post_attention_norm": "post_attention_layernorm",
        "ffn_norm": "pre_feedforward_layernorm",
        "post_ffw_norm": "post_feedforward_layernorm",
    },
}
_ARCH_LAYER_NAMES["gemma3"] = _ARCH_LAYER_NAMES["gemma2"]
# GGUF general.architecture -> HF architecture (the GGUF archs this loader reads).
ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "phi3": "Phi3ForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
}
_MODEL_TYPES = {"gemma3": "gemma3_text"}
_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_BLOCK = re.compile(r"^blk\.(\d+)\.(\w+)\.(weight|bias)$")


def _field(reader: gguf.GGUFReader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def read_config(reader: gguf.GGUFReader) -> ModelConfig:
    """The model's config from the metadata, as an HF ``config.json`` dict checked by
    ``ModelConfig.from_hf_dict`` (so both sources meet the same validation)."""
    arch = _field(reader, "general.architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"GGUF architecture {arch!r} is not supported; known: {', '.join(ARCHITECTURES)}"
        )
    heads = int(_field(reader, f"{arch}.attention.head_count"))
    hidden = int(_field(reader, f"{arch}.embedding_length"))
    names = {t.name for t in reader.tensors}
    if "rope_freqs.weight" in names:
        logger.warning("GGUF rope_freqs (Llama-3.1 scaling) is ignored; use the HF checkpoint")
    if "rope_factors_long.weight" in names or "rope_factors_short.weight" in names:
        raise ValueError("GGUF LongRoPE factors (Phi-3 128k) are not supported; use the HF files")
    vocab = _field(reader, f"{arch}.vocab_size") or len(reader.fields["tokenizer.ggml.tokens"].data)
    eos = [
        _field(reader, "tokenizer.ggml.eos_token_id"),
        _field(reader, "tokenizer.ggml.eot_token_id"),
    ]
    head_dim = int(_field(reader, f"{arch}.attention.key_length", hidden // heads))
    layers = int(_field(reader, f"{arch}.block_count"))
    d: dict[str, Any] = {
        "architectures": [ARCHITECTURES[arch]],
        "model_type": _MODEL_TYPES.get(arch, arch),
        "vocab_size": int(vocab),
        "hidden_size": hidden,
        "intermediate_size": int(_field(reader, f"{arch}.feed_forward_length")),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": int(_field(reader, f"{arch}.attention.head_count_kv", heads)),
        "head_dim": head_dim,
        "rms_norm_eps": float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(_field(reader, f"{arch}.context_length", 2048)),
        "tie_word_embeddings": "output.weight" not in names,
        "eos_token_id": list(dict.fromkeys(int(e) for e in eos if e is not None)),
        "bos_token_id": _field(reader, "tokenizer.ggml.bos_token_id"),
        "sliding_window": _field(reader, f"{arch}.attention.sliding_window"),
    }
    if arch == "phi3":
        rot = _field(reader, f"{arch}.rope.dimension_count")
        d["partial_rotary_factor"] = int(rot) / head_dim if rot else 1.0
    if arch in ("gemma2", "gemma3"):
        d["hidden_activation"] = "gelu_pytorch_tanh"
        d["attn_logit_softcapping"] = _field(reader, f"{arch}.attn_logit_softcapping")
        d["final_logit_softcapping"] = _field(reader, f"{arch}.final_logit_softcapping")
        # NOTE: GGUF has no query_pre_attn_scalar; llama.cpp takes hidden / heads for the 27B
        # models (46 layers for Gemma 2, 62 for Gemma 3) and head_dim for the others.
        big = layers == {"gemma2": 46, "gemma3": 62}[arch]
        d["query_pre_attn_scalar"] = hidden // heads if big else head_dim
    if arch == "gemma3":  # llama.cpp: five sliding layers to one full, local RoPE base 10000
        d["rope_local_base_freq"] = 10000.0
        factor = _field(reader, f"{arch}.rope.scaling.factor")
        if factor and float(factor) != 1.0:
            d["rope_scaling"] = {"rope_type": "linear", "factor": float(factor)}
    return ModelConfig.from_hf_dict(d)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of convert_hf_to_gguf's ``permute`` (use ``n_head`` = kv heads for k)."""
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_name(gguf_name: str, arch: str = "llama") -> str | None:
    m = _BLOCK.match(gguf_name)
    if m:
        layer, part, kind = m.groups()
        mapped = _ARCH_LAYER_NAMES.get(arch, {}).get(part) or _LAYER_NAMES.get(part)
        return None if mapped is None else f"model.layers.{layer}.{mapped}.{kind}"
    base, _, kind = gguf_name.rpartition(".")
    mapped = _GLOBAL_NAMES.get(base)
    return None if mapped is None else f"{mapped}.{kind}"


def iter_weights(
    reader: gguf.GGUFReader, config: ModelConfig
) -> Iterator[tuple[str, torch.Tensor]]:
    """Dequantized float32 tensors with HF names, q/k rows un-permuted."""
    for t in log_progress(reader.tensors, len(reader.tensors), "loading GGUF tensors"):
        name = hf_name(t.name, config.model_type.removesuffix("_text"))
        if name is None:
            logger.debug("skipping GGUF tensor %s", t.name)
            continue
        w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        permuted = config.model_type == "llama" and kind_of(name) == "weight"
        if permuted and ".q_proj." in name:
            w = unpermute_qk(w, config.num_heads)
        elif permuted and ".k_proj." in name:
            w = unpermute_qk(w, config.num_kv_heads)
        if config.model_type.startswith("gemma") and name.endswith("norm.weight"):
            w = w - 1.0  # llama.cpp stores Gemma's (1 + w) norm weights as 1 + w
        if not (w.flags.writeable and w.flags.c_contiguous):
            w = np.array(w, order="C")  # F32 tensors are read-only views of the mmap
        yield name, torch.from_numpy(w)


def kind_of(name: str) -> str:
    return name.rpartition(".")[2]


def open_gguf(path: str) -> tuple[gguf.GGUFReader, ModelConfig]:
    reader = gguf.GGUFReader(path)
    return reader, read_config(reader)


def transformers_llama(path: str) -> Any:
    """transformers' ``LlamaForCausalLM`` on this loader's tensors (HF names, before fusion):
    the reference for parity tests and the CPU benchmark. Needs transformers (a test extra)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    reader, config = open_gguf(path)
    hf_config = LlamaConfig(**{**config.to_hf_dict(), "eos_token_id": None})
    with torch.device("meta"):
        model = LlamaForCausalLM(hf_config)
    tensors = dict(iter_weights(reader, config))
    if config.tie_word_embeddings:
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    model.load_state_dict(tensors, strict=True, assign=True)
    # NOTE: the rotary buffers were built on the meta device; rebuild them on the CPU.
    model.model.rotary_emb = type(model.model.rotary_emb)(config=hf_config)
    return model.eval()
