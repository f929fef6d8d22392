"""Phi-3 / Phi-3.5: Llama whose checkpoint holds ``qkv_proj`` and ``gate_up_proj`` already fused.

The fused tensors load through the layers' ``full_loader`` (split into q/k/v or gate/up, each
part cut to this rank's shard). ``partial_rotary_factor`` and LongRoPE (``rope_scaling`` type
``longrope``) reach the shared rotary embedding through ``ModelConfig``.
"""

from __future__ import annotations

import logging

from radixserve.worker.models.llama import LlamaForCausalLM

logger = logging.getLogger(__name__)


class Phi3ForCausalLM(LlamaForCausalLM):
    stacked_params_mapping = (
        ("qkv_proj", "qkv_proj", "full"),
        ("gate_up_proj", "gate_up_proj", "full"),
    )
