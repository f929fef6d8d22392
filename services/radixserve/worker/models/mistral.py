"""Mistral / Mistral-Nemo: Llama with an explicit ``head_dim`` and a sliding window.

Both come from ``ModelConfig``: ``head_dim`` (Nemo: 128, not hidden / heads) sizes the layers and
``sliding_window`` reaches every layer's attention through ``ModelConfig.layer_window``.
"""

from __future__ import annotations

import logging

from radixserve.worker.models.llama import LlamaForCausalLM

logger = logging.getLogger(__name__)


class MistralForCausalLM(LlamaForCausalLM):
    pass
