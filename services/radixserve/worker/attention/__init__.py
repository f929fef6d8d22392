"""Attention backends by name, imported lazily (``RADIXSERVE_ATTENTION_BACKEND``)."""

from __future__ import annotations

import importlib
import logging

from radixserve.worker.attention.base import AttentionBackend

logger = logging.getLogger(__name__)

_BACKENDS: dict[str, str] = {
    "torch": "radixserve.worker.attention.torch_backend:TorchAttentionBackend",
    "triton": "radixserve.worker.attention.triton_backend:TritonAttentionBackend",
}


def known_backends() -> list[str]:
    return sorted(_BACKENDS)


def get_backend_class(name: str) -> type[AttentionBackend]:
    """The backend class for ``name``; ValueError listing the known names when unknown.

    Raises ImportError when a known backend cannot be imported here (e.g. no Triton).
    """
    if name not in _BACKENDS:
        raise ValueError(
            f"unknown attention backend {name!r}; known: {', '.join(known_backends())}"
        )
    module, cls = _BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["AttentionBackend", "get_backend_class", "known_backends"]
