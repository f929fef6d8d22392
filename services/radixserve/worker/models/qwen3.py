"""Qwen3 (dense): Llama with a per-head RMSNorm on q and k before RoPE, explicit ``head_dim``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from radixserve.worker.forward_context import ForwardContext
from radixserve.worker.layers import RMSNorm, RotaryEmbedding
from radixserve.worker.layers.ops import Ops
from radixserve.worker.model_config import ModelConfig
from radixserve.worker.models.llama import (
    LlamaAttention,
    LlamaDecoderLayer,
    LlamaForCausalLM,
    LlamaModel,
)

if TYPE_CHECKING:
    from radixserve.worker.parallel.group import TPGroup

logger = logging.getLogger(__name__)


class Qwen3Attention(LlamaAttention):
    def __init__(
        self,
        config: ModelConfig,
        layer_id: int,
        rotary: RotaryEmbedding,
        tp: TPGroup | None,
        ops: Ops | None = None,
        max_position: int | None = None,
    ) -> None:
        super().__init__(config, layer_id, rotary, tp, ops, max_position)
        self.q_norm = RMSNorm(config.head_dim, config.rms_norm_eps, ops)
        self.k_norm = RMSNorm(config.head_dim, config.rms_norm_eps, ops)

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, ctx: ForwardContext
    ) -> torch.Tensor:
        q, k, v = self.qkv_proj(x).split(self.split, dim=-1)
        shape = (len(x), -1, self.head_dim)
        q = self.q_norm(q.reshape(-1, self.head_dim)).view(shape)
        k = self.k_norm(k.reshape(-1, self.head_dim)).view(shape)
        q, k = self.rotary(positions, q, k)
        return self.o_proj(self.attn(q, k, v, ctx))


class Qwen3DecoderLayer(LlamaDecoderLayer):
    attention_cls = Qwen3Attention


class Qwen3Model(LlamaModel):
    layer_cls = Qwen3DecoderLayer


class Qwen3ForCausalLM(LlamaForCausalLM):
    model_cls = Qwen3Model
