"""The model hyper-parameters the worker needs, read from an HF ``config.json`` dict or GGUF.

Every family's fields are read and checked here, once: an unknown ``rope_scaling`` type,
``hidden_act`` or a quantized checkpoint is a ValueError naming the field.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    eos_token_ids: tuple[int, ...] = ()
    bos_token_id: int | None = None
    model_type: str = ""
    hidden_act: str = "silu"
    sliding_window: int | None = None  # W: a query at p sees keys p - W < k <= p
    layer_types: tuple[str, ...] = ()  # per layer "sliding_attention" or "full_attention"
    partial_rotary_factor: float = 1.0
    query_pre_attn_scalar: float | None = None  # attention scale = this ** -0.5 (Gemma)
    attn_logit_softcapping: float | None = None
    final_logit_softcapping: float | None = None
    rope_local_theta: float | None = None  # RoPE base of sliding layers (Gemma 3)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> ModelConfig:
        archs = d.get("architectures") or ["LlamaForCausalLM"]
        num_heads = int(d["num_attention_heads"])
        hidden = int(d["hidden_size"])
        _check_quantization(d)
        theta, scaling, local_theta = _rope_from_hf(d)
        num_layers = int(d["num_hidden_layers"])
        model_type = str(d.get("model_type") or "")
        window = d.get("sliding_window")
        if d.get("use_sliding_window") is False:  # Qwen2/3: the window is off unless asked for
            window = None
        window = int(window) if window else None
        act = str(d.get("hidden_activation") or d.get("hidden_act") or "silu")
        if act not in HIDDEN_ACTS:
            raise ValueError(f"unsupported hidden_act {act!r}; known: {', '.join(HIDDEN_ACTS)}")
        partial = float(
            d.get("partial_rotary_factor")
            or (d.get("rope_parameters") or {}).get("partial_rotary_factor")
            or 1.0
        )
        if scaling is not None:
            scaling = _check_rope_scaling(scaling, d)
        return cls(
            architecture=archs[0],
            vocab_size=int(d["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(d["intermediate_size"]),
            num_layers=num_layers,
            num_heads=num_heads,
            num_kv_heads=int(d.get("num_key_value_heads") or num_heads),
            head_dim=int(d.get("head_dim") or hidden // num_heads),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-5)),
            rope_theta=theta,
            rope_scaling=scaling,
            max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            attention_bias=bool(d.get("attention_bias", False)),
            mlp_bias=bool(d.get("mlp_bias", False)),
            eos_token_ids=_as_ids(d.get("eos_token_id")),
            bos_token_id=d.get("bos_token_id"),
            model_type=model_type,
            hidden_act=act,
            sliding_window=window,
            layer_types=_layer_types(d, model_type, num_layers, window),
            partial_rotary_factor=partial,
            query_pre_attn_scalar=_opt_float(d.get("query_pre_attn_scalar")),
            attn_logit_softcapping=_opt_float(d.get("attn_logit_softcapping")),
            final_logit_softcapping=_opt_float(d.get("final_logit_softcapping")),
            rope_local_theta=local_theta,
            extra=dict(d),
        )

    @property
    def rotary_dim(self) -> int:
        """Leading dims of each head that RoPE rotates (Phi-3's ``partial_rotary_factor``)."""
        return int(self.head_dim * self.partial_rotary_factor)

    def layer_window(self, layer_id: int, max_position: int | None = None) -> int:
        """Sliding window of layer ``layer_id``; 0 (full attention) when it has none or when
        the window cannot bind within ``max_position`` tokens."""
        w = self.sliding_window or 0
        if not w or not self.layer_types or self.layer_types[layer_id] != "sliding_attention":
            return 0
        return 0 if max_position is not None and w >= max_position else w

    def sliding_windows(self, max_position: int | None = None) -> tuple[int, ...]:
        """The distinct windows of the model's sliding layers (empty: full attention only)."""
        ws = {self.layer_window(i, max_position) for i in range(self.num_layers)}
        return tuple(sorted(ws - {0}))

    def to_hf_dict(self) -> dict[str, Any]:
        """A ``config.json``-style dict (used to build reference models in tests)."""
        d = {
            "architectures": [self.architecture],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "mlp_bias": self.mlp_bias,
        }
        if self.rope_scaling:
            d["rope_scaling"] = dict(self.rope_scaling)
        if self.eos_token_ids:
            d["eos_token_id"] = list(self.eos_token_ids)
        return d


ROPE_TYPES = ("default", "linear", "llama3", "longrope")
HIDDEN_ACTS = ("silu", "gelu_pytorch_tanh", "gelu")


def _rope_from_hf(d: dict[str, Any]) -> tuple[float, dict[str, Any] | None, float | None]:
    """``(theta, scaling, local_theta)`` from ``rope_theta``/``rope_scaling`` (transformers 4)
    or ``rope_parameters`` (transformers 5, per layer type for Gemma 3). ``local_theta`` is the
    base of sliding layers when it differs by layer type (Gemma 3), else None."""
    params = d.get("rope_parameters") or {}
    local_theta = None
    if "full_attention" in params or "sliding_attention" in params:
        local = params.get("sliding_attention") or {}
        params = params.get("full_attention") or {}
        if local.get("rope_type", "default") != "default":
            raise ValueError(
                f"unsupported rope_parameters.sliding_attention.rope_type {local['rope_type']!r} "
                "(sliding layers take plain RoPE)"
            )
        local_theta = _opt_float(local.get("rope_theta"))
    elif d.get("rope_local_base_freq") is not None:
        local_theta = float(d["rope_local_base_freq"])
    scaling = d.get("rope_scaling") or None
    theta = float(d.get("rope_theta") or params.get("rope_theta") or 10000.0)
    if scaling is None and params.get("rope_type", "default") != "default":
        drop = ("rope_theta", "partial_rotary_factor")
        scaling = {k: v for k, v in params.items() if k not in drop}
    if scaling is not None and scaling.get("rope_type", scaling.get("type")) == "default":
        scaling = None
    return theta, scaling, local_theta


def _check_rope_scaling(scaling: dict[str, Any], d: dict[str, Any]) -> dict[str, Any]:
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind not in ROPE_TYPES:
        raise ValueError(f"unsupported rope_scaling type {kind!r}; known: {', '.join(ROPE_TYPES)}")
    scaling = {**scaling, "rope_type": kind}
    if kind == "longrope":  # the factor defaults to the ratio of the two context lengths
        orig = scaling.get("original_max_position_embeddings")
        orig = int(orig or d.get("original_max_position_embeddings") or 0)
        if not orig or "short_factor" not in scaling or "long_factor" not in scaling:
            raise ValueError(
                "rope_scaling type 'longrope' needs short_factor, long_factor and "
                "original_max_position_embeddings"
            )
        scaling["original_max_position_embeddings"] = orig
        if scaling.get("factor") is None:
            scaling["factor"] = int(d.get("max_position_embeddings", orig)) / orig
    return scaling


def _check_quantization(d: dict[str, Any]) -> None:
    q = d.get("quantization_config")
    if q:
        method = q.get("quant_method") if isinstance(q, dict) else q
        raise ValueError(
            f"unsupported quantization_config.quant_method {method!r}: this worker serves "
            "unquantized HF checkpoints (bf16/fp16/fp32) and GGUF files"
        )


def _layer_types(
    d: dict[str, Any], model_type: str, num_layers: int, window: int | None
) -> tuple[str, ...]:
    """Each layer's attention type, as transformers derives it when the config has none."""
    types = d.get("layer_types")
    if types:
        if len(types) != num_layers:
            raise ValueError(f"layer_types has {len(types)} entries for {num_layers} layers")
        bad = set(types) - {"sliding_attention", "full_attention"}
        if bad:
            raise ValueError(f"unsupported layer_types entries {sorted(bad)}")
        return tuple(types)
    if model_type == "gemma2":  # even layers slide
        sliding = [(i + 1) % 2 == 1 for i in range(num_layers)]
    elif model_type in ("gemma3", "gemma3_text"):
        pattern = int(d.get("sliding_window_pattern") or 6)
        sliding = [(i + 1) % pattern != 0 for i in range(num_layers)]
    elif model_type in ("qwen2", "qwen3"):
        first = int(d.get("max_window_layers") or 0)
        sliding = [window is not None and i >= first for i in range(num_layers)]
    else:  # Mistral, Phi-3: every layer slides when a window is set
        sliding = [window is not None] * num_layers
    return tuple("sliding_attention" if s else "full_attention" for s in sliding)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _as_ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)
