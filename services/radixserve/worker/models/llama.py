"""Llama (1/2/3, SmolLM, ...) for causal LM, assembled from ``services.worker.layers``.

The Llama-shaped families (Mistral, Qwen2, Qwen3, Phi-3) reuse these classes and override only
what differs: ``attention_cls``/``mlp_cls`` of the decoder layer, ``layer_cls`` of the model,
``model_cls`` and the checkpoint mapping of the causal LM.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from torch import nn

from radixserve.worker.forward_context import ForwardContext
from radixserve.worker.layers import (
    LMHead,
    MergedColumnParallelLinear,
    QKVParallelLinear,
    RMSNorm,
    RotaryEmbedding,
    RowParallelLinear,
    VocabEmbedding,
    gated_activation,
)
from radixserve.worker.layers.attention import PagedAttention
from radixserve.worker.layers.ops import Ops
from radixserve.worker.model_config import ModelConfig
from radixserve.worker.models.base import CausalLM

if TYPE_CHECKING:
    from radixserve.worker.parallel.group import TPGroup

logger = logging.getLogger(__name__)


class LlamaAttention(nn.Module):
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
        c = config
        qkv_bias, o_bias = self.biases(c)
        self.qkv_proj = QKVParallelLinear(
            c.hidden_size, c.head_dim, c.num_heads, c.num_kv_heads, bias=qkv_bias, group=tp
        )
        self.o_proj = RowParallelLinear(
            c.num_heads * c.head_dim, c.hidden_size, bias=o_bias, group=tp
        )
        self.rotary = rotary  # shared by all layers (one cos/sin cache)
        self.attn = PagedAttention(
            layer_id, self.qkv_proj.num_heads, self.qkv_proj.num_kv_heads, c.head_dim,
            sliding_window=c.layer_window(layer_id, max_position),
        )  # fmt: skip
        self.head_dim = c.head_dim
        self.split = (self.qkv_proj.q_size, self.qkv_proj.kv_size, self.qkv_proj.kv_size)

    @staticmethod
    def biases(config: ModelConfig) -> tuple[bool, bool]:
        """Whether q/k/v and o have a bias."""
        return config.attention_bias, config.attention_bias

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, ctx: ForwardContext
    ) -> torch.Tensor:
        q, k, v = self.qkv_proj(x).split(self.split, dim=-1)
        q, k = self.rotary(
            positions, q.view(len(x), -1, self.head_dim), k.view(len(x), -1, self.head_dim)
        )
        return self.o_proj(self.attn(q, k, v, ctx))


class LlamaMLP(nn.Module):
    def __init__(self, config: ModelConfig, tp: TPGroup | None, ops: Ops | None = None) -> None:
        super().__init__()
        c = config
        self.gate_up_proj = MergedColumnParallelLinear(
            c.hidden_size, [c.intermediate_size] * 2, bias=c.mlp_bias, group=tp
        )
        self.down_proj = RowParallelLinear(
            c.intermediate_size, c.hidden_size, bias=c.mlp_bias, group=tp
        )
        self.act = gated_activation(c.hidden_act, ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_up_proj(x)))


class LlamaDecoderLayer(nn.Module):
    attention_cls: type[LlamaAttention] = LlamaAttention
    mlp_cls: type[LlamaMLP] = LlamaMLP

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
        self.self_attn = self.attention_cls(config, layer_id, rotary, tp, ops, max_position)
        self.mlp = self.mlp_cls(config, tp, ops)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, ops)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, ops)

    def forward(
        self,
        positions: torch.Tensor,
        x: torch.Tensor,
        residual: torch.Tensor | None,
        ctx: ForwardContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            x, residual = self.input_layernorm(x), x
        else:
            x, residual = self.input_layernorm(x, residual)
        x = self.self_attn(positions, x, ctx)
        x, residual = self.post_attention_layernorm(x, residual)
        return self.mlp(x), residual


class LlamaModel(nn.Module):
    layer_cls: type[LlamaDecoderLayer] = LlamaDecoderLayer

    def __init__(
        self,
        config: ModelConfig,
        max_position: int,
        tp: TPGroup | None = None,
        ops: Ops | None = None,
    ) -> None:
        super().__init__()
        self.embed_tokens = VocabEmbedding(config.vocab_size, config.hidden_size, group=tp)
        rotary = RotaryEmbedding(
            config.head_dim, max_position, config.rope_theta, config.rope_scaling,
            rot_dim=config.rotary_dim, ops=ops,
        )  # fmt: skip
        self.layers = nn.ModuleList(
            self.layer_cls(config, i, rotary, tp, ops, max_position)
            for i in range(config.num_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, ops)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: ForwardContext
    ) -> torch.Tensor:
        x, residual = self.embed_tokens(input_ids), None
        for layer in self.layers:
            x, residual = layer(positions, x, residual, ctx)
        x, _ = self.norm(x, residual)
        return x


class LlamaForCausalLM(CausalLM):
    model_cls: type[LlamaModel] = LlamaModel
    stacked_params_mapping: tuple[tuple[str, str, str | int], ...] = (
        ("qkv_proj", "q_proj", "q"),
        ("qkv_proj", "k_proj", "k"),
        ("qkv_proj", "v_proj", "v"),
        ("gate_up_proj", "gate_proj", 0),
        ("gate_up_proj", "up_proj", 1),
    )

    def __init__(
        self,
        config: ModelConfig,
        max_position: int | None = None,
        tp: TPGroup | None = None,
        ops: Ops | None = None,
    ) -> None:
        super().__init__(config)
        self.model = self.model_cls(config, max_position or config.max_position_embeddings, tp, ops)
        self.lm_head = LMHead(config.vocab_size, config.hidden_size, group=tp)
        if config.tie_word_embeddings:
            self.lm_head.tie(self.model.embed_tokens)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: ForwardContext
    ) -> torch.Tensor:
        hidden = self.model(input_ids, positions, ctx)
        return self.lm_head(hidden[ctx.logits_indices])
