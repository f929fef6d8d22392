"""Load the tokenizer of a model, whatever format the model comes in.

``load_tokenizer(source)`` returns a :class:`Tokenizer`:

* ``gguf``: the vocabulary in the file's metadata (byte-level BPE ``gpt2`` or sentencepiece-style
  ``llama``), see :mod:`.gguf_vocab`;
* ``hf``: ``tokenizer.json`` or ``tokenizer.model`` of the directory, see :mod:`.hf_dir`;
* ``dummy``: the real tokenizer when the dummy path is a directory that has one, otherwise the
  stand-in :class:`CharTokenizer` (one character per id) sized to the config's ``vocab_size``.
"""

from __future__ import annotations

import json
import logging
import os

from radixserve.common.model_source import EMBEDDED_VOCAB_SIZE, ModelSource

from .base import END_OF_GENERATION_TOKENS, Tokenizer
from .byte_level import ByteTokenizer
from .char_vocab import CharTokenizer

logger = logging.getLogger(__name__)

__all__ = [
    "END_OF_GENERATION_TOKENS",
    "ByteTokenizer",
    "CharTokenizer",
    "Tokenizer",
    "load_tokenizer",
]


def load_tokenizer(source: ModelSource) -> Tokenizer:
    """The tokenizer for ``source``; raises ``ValueError`` for a vocabulary it cannot read."""
    if source.kind == "gguf":
        from .gguf_vocab import load_gguf_tokenizer

        tok: Tokenizer = load_gguf_tokenizer(source.path)
    elif source.kind == "hf":
        from .hf_dir import load_hf_dir_tokenizer

        tok = load_hf_dir_tokenizer(source.path)
    elif source.kind == "dummy":
        tok = _dummy_tokenizer(source.path)
    else:
        raise ValueError(f"unknown model source kind {source.kind!r} (gguf, hf or dummy)")
    logger.info("tokenizer for %s: %r", source.name, tok)
    return tok


def _dummy_tokenizer(path: str) -> Tokenizer:
    from .hf_dir import has_tokenizer_files, load_hf_dir_tokenizer

    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if path and has_tokenizer_files(folder):
        return load_hf_dir_tokenizer(folder)
    # No config means the embedded model's shapes.
    return CharTokenizer(vocab_size=_config_vocab_size(path) or EMBEDDED_VOCAB_SIZE)


def _config_vocab_size(path: str) -> int:
    file = os.path.join(path, "config.json") if os.path.isdir(path) else path
    if not file or not os.path.isfile(file):
        return 0
    with open(file, encoding="utf-8") as f:
        value = json.load(f).get("vocab_size", 0)
    return value if isinstance(value, int) else 0
