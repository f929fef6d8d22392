"""Gemma 2: (1 + w) RMSNorm in float32, four norms per layer, GeGLU (tanh GELU), embeddings scaled
by sqrt(hidden), attention scale ``query_pre_attn_scalar ** -0.5``, attention-logit and final-logit
soft-capping, sliding window on alternate layers (``layer_types``), head_dim 256.

Gemma 3 (``models.gemma3``) reuses these classes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from torch import nn

from radixserve.worker.forward_context import ForwardContext
from radixserve.worker.layers import (
    GemmaRMSNorm,
    MergedColumnParallelLinear,
    QKVParallelLinear,
    RotaryEmbedding,
    RowParallelLinear,
    VocabEmbedding,
    gated_activation,
)
from radixserve.worker.layers.attention import PagedAttention
from radixserve.worker.layers.ops import Ops
from radixserve.worker.model_config import ModelConfig
from radixserve.worker.models.llama import LlamaForCausalLM

if TYPE_CHECKING:
    from radixserve.worker.parallel.group import TPGroup

logger = logging.getLogger(__name__)


def softcap(x: torch.Tensor, cap: float | None) -> torch.Tensor:
    return x if not cap else torch.tanh(x / cap) * cap


class Gemma2Attention(nn.Module):
    qk_norm = False  # Gemma 3 normalizes each head of q and k

    def __init__(
        self,
        config: ModelConfig,
        layer_id: int,
        rotary: RotaryEmbedding,
        tp: TPGroup | None,
        max_position: int | None = None,
    ) -> None:
        super().__init__()
        c = config
        self.head_dim = c.head_dim
        self.qkv_proj = QKVParallelLinear(
            c.hidden_size, c.head_dim, c.num_heads, c.num_kv_heads, bias=c.attention_bias, group=tp
        )
        self.o_proj = RowParallelLinear(
            c.num_heads * c.head_dim, c.hidden_size, bias=c.attention_bias, group=tp
        )
        self.split = (self.qkv_proj.q_size, self.qkv_proj.kv_size, self.qkv_proj.kv_size)
        self.rotary = rotary
        if self.qk_norm:
            self.q_norm = GemmaRMSNorm(c.head_dim, c.rms_norm_eps)
            self.k_norm = GemmaRMSNorm(c.head_dim, c.rms_norm_eps)
        scalar = c.query_pre_attn_scalar or c.head_dim
        self.attn = PagedAttention(
            layer_id, self.qkv_proj.num_heads, self.qkv_proj.num_kv_heads, c.head_dim,
            scale=scalar**-0.5, sliding_window=c.layer_window(layer_id, max_position),
            logit_cap=c.attn_logit_softcapping or 0.0,
        )  # fmt: skip

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, ctx: ForwardContext
    ) -> torch.Tensor:
        q, k, v = self.qkv_proj(x).split(self.split, dim=-1)
        q = q.reshape(len(x), -1, self.head_dim)
        k = k.reshape(len(x), -1, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = self.rotary(positions, q, k)
        return self.o_proj(self.attn(q, k, v, ctx))


class Gemma2MLP(nn.Module):
    def __init__(self, config: ModelConfig, tp: TPGroup | None, ops: Ops | None = None) -> None:
        super().__init__()
        c = config
        self.gate_up_proj = MergedColumnParallelLinear(
            c.hidden_size, [c.intermediate_size] * 2, group=tp
        )
        self.down_proj = RowParallelLinear(c.intermediate_size, c.hidden_size, group=tp)
        self.act = gated_activation(c.hidden_act, ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_up_proj(x)))


class Gemma2DecoderLayer(nn.Module):
    attention_cls: type[Gemma2Attention] = Gemma2Attention

    def __init__(
        self,
        config: ModelConfig,
        layer_id: int,
        rotary: RotaryEmbedding,
        tp: TPGroup | None,
        ops: Ops | None = None,
        max_position: int | None = None,
    ) -> None:
        super().__init__()
        h, eps = config.hidden_size, config.rms_norm_eps
        self.self_attn = self.attention_cls(config, layer_id, rotary, tp, max_position)
        self.mlp = Gemma2MLP(config, tp, ops)
        self.input_layernorm = GemmaRMSNorm(h, eps)
        self.post_attention_layernorm = GemmaRMSNorm(h, eps)
        self.pre_feedforward_layernorm = GemmaRMSNorm(h, eps)
        self.post_feedforward_layernorm = GemmaRMSNorm(h, eps)

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, ctx: ForwardContext
    ) -> torch.Tensor:
        h = self.self_attn(positions, self.input_layernorm(x), ctx)
        x = x + self.post_attention_layernorm(h)
        h = self.mlp(self.pre_feedforward_layernorm(x))
        return x + self.post_feedforward_layernorm(h)


class Gemma2Model(nn.Module):
    layer_cls: type[Gemma2DecoderLayer] = Gemma2DecoderLayer

    def __init__(
        self,
        config: ModelConfig,
        max_position: int,
        tp: TPGroup | None = None,
        ops: Ops | None = None,
    ) -> None:
        super().__init__()
        c = config
        self.embed_tokens = VocabEmbedding(c.vocab_size, c.hidden_size, group=tp)
        # NOTE: as transformers, sqrt(hidden) rounded to the model's dtype; a device buffer, so a
        # captured CUDA graph reads no host value.
        self.register_buffer("embed_scale", torch.tensor(c.hidden_size**0.5), persistent=False)
        rotaries = self.rotaries(c, max_position, ops)
        sliding = [bool(c.layer_types) and t == "sliding_attention" for t in c.layer_types]
        self.layers = nn.ModuleList(
            self.layer_cls(c, i, rotaries[sliding[i]], tp, ops, max_position)
            for i in range(c.num_layers)
        )
        self.norm = GemmaRMSNorm(c.hidden_size, c.rms_norm_eps)

    @staticmethod
    def rotaries(
        c: ModelConfig, max_position: int, ops: Ops | None
    ) -> tuple[RotaryEmbedding, RotaryEmbedding]:
        """RoPE of (full, sliding) layers: one for Gemma 2."""
        rotary = RotaryEmbedding(c.head_dim, max_position, c.rope_theta, c.rope_scaling, ops=ops)
        return rotary, rotary

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: ForwardContext
    ) -> torch.Tensor:
        x = self.embed_tokens(input_ids) * self.embed_scale.to(self.embed_tokens.weight.dtype)
        for layer in self.layers:
            x = layer(positions, x, ctx)
        return self.norm(x)


class Gemma2ForCausalLM(LlamaForCausalLM):
    """Llama's LM head and checkpoint names over Gemma 2's model, plus the final logit soft-cap."""

    model_cls = Gemma2Model  # type: ignore[assignment]

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: ForwardContext
    ) -> torch.Tensor:
        logits = super().forward(input_ids, positions, ctx)
        if logits is None:  # a TP follower
            return logits
        return softcap(logits, self.config.final_logit_softcapping)
