"""Model architectures by HF ``architectures`` name, imported lazily."""

from __future__ import annotations

import importlib
import logging

from radixserve.worker.models.base import CausalLM

logger = logging.getLogger(__name__)

# NOTE: listed (and reported) in this order: Llama, the reference, then the other families.
_MODELS: dict[str, str] = {
    "LlamaForCausalLM": "radixserve.worker.models.llama:LlamaForCausalLM",
    "Gemma2ForCausalLM": "radixserve.worker.models.gemma2:Gemma2ForCausalLM",
    "Gemma3ForCausalLM": "radixserve.worker.models.gemma3:Gemma3ForCausalLM",
    "MistralForCausalLM": "radixserve.worker.models.mistral:MistralForCausalLM",
    "Phi3ForCausalLM": "radixserve.worker.models.phi3:Phi3ForCausalLM",
    "Qwen2ForCausalLM": "radixserve.worker.models.qwen2:Qwen2ForCausalLM",
    "Qwen3ForCausalLM": "radixserve.worker.models.qwen3:Qwen3ForCausalLM",
}


def known_architectures() -> list[str]:
    return list(_MODELS)


def get_model_class(architecture: str) -> type[CausalLM]:
    """The model class for an HF architecture name; ValueError listing the known ones."""
    if architecture not in _MODELS:
        raise ValueError(
            f"unsupported model architecture {architecture!r}; "
            f"known: {', '.join(known_architectures())}"
        )
    module, cls = _MODELS[architecture].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["CausalLM", "get_model_class", "known_architectures"]
