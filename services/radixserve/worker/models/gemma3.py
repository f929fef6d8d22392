"""Gemma 3 (text): Gemma 2 without the soft-caps (unless the config sets them), with a (1 + w)
RMSNorm on each head of q and k before RoPE, ``layer_types`` (five sliding to one full) and a RoPE
base per layer type: ``rope_local_base_freq`` (plain RoPE) on sliding layers, ``rope_theta`` and
``rope_scaling`` on full ones."""

from __future__ import annotations

import logging

from radixserve.worker.layers import RotaryEmbedding
from radixserve.worker.layers.ops import Ops
from radixserve.worker.model_config import ModelConfig
from radixserve.worker.models.gemma2 import (
    Gemma2Attention,
    Gemma2DecoderLayer,
    Gemma2ForCausalLM,
    Gemma2Model,
)

logger = logging.getLogger(__name__)


class Gemma3Attention(Gemma2Attention):
    qk_norm = True


class Gemma3DecoderLayer(Gemma2DecoderLayer):
    attention_cls = Gemma3Attention


class Gemma3Model(Gemma2Model):
    layer_cls = Gemma3DecoderLayer

    @staticmethod
    def rotaries(
        c: ModelConfig, max_position: int, ops: Ops | None
    ) -> tuple[RotaryEmbedding, RotaryEmbedding]:
        full = RotaryEmbedding(c.head_dim, max_position, c.rope_theta, c.rope_scaling, ops=ops)
        local_theta = c.rope_local_theta if c.rope_local_theta is not None else 10000.0
        return full, RotaryEmbedding(c.head_dim, max_position, local_theta, None, ops=ops)


class Gemma3ForCausalLM(Gemma2ForCausalLM):
    model_cls = Gemma3Model
