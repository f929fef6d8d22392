"""Load the tokenizer of a Hugging Face model directory.

``tokenizer.json`` (the ``tokenizers`` library) is preferred; ``tokenizer.model`` (sentencepiece)
is the fallback. ``tokenizer_config.json`` gives the special tokens, ``add_bos_token`` and the chat
template (or ``chat_template.jinja``); ``generation_config.json`` and ``config.json`` add eos ids.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from .base import Tokenizer

logger = logging.getLogger(__name__)


def has_tokenizer_files(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer.model"))


def load_hf_dir_tokenizer(path: str) -> Tokenizer:
    config = _read_json(path, "tokenizer_config.json")
    template = _chat_template(path, config)
    bos = _token_text(config.get("bos_token"))
    eos: list[str | int | None] = [_token_text(config.get("eos_token"))]
    eos += _config_eos_ids(path)
    if os.path.isfile(os.path.join(path, "tokenizer.json")):
        return _load_tokenizer_json(path, config, bos, eos, template)
    if os.path.isfile(os.path.join(path, "tokenizer.model")):
        from .spm import SentencePieceTokenizer

        extra = [_token_text(t) for t in _added_specials(config)]
        return SentencePieceTokenizer(
            os.path.join(path, "tokenizer.model"),
            bos_token=bos,
            eos_tokens=eos,
            add_bos=bool(config.get("add_bos_token", True)),
            chat_template=template,
            extra_special=[t for t in extra if t],
        )
    raise FileNotFoundError(f"{path}: no tokenizer.json or tokenizer.model")


def _load_tokenizer_json(
    path: str,
    config: dict[str, Any],
    bos: str | None,
    eos: list[str | int | None],
    template: str | None,
) -> Tokenizer:
    import tokenizers

    from .hf_tokenizers import TokenizersTokenizer

    tok = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    to_id = lambda t: t if t is None or isinstance(t, int) else tok.token_to_id(t)  # noqa: E731
    return TokenizersTokenizer(
        tok,
        bos_token_id=to_id(bos),
        eos_token_ids=[to_id(t) for t in eos],
        add_bos=bool(config.get("add_bos_token", False)),
        chat_template=template,
    )


def _read_json(path: str, name: str) -> dict[str, Any]:
    file = os.path.join(path, name)
    if not os.path.isfile(file):
        return {}
    with open(file, encoding="utf-8") as f:
        return json.load(f)


def _token_text(token: Any) -> str | None:
    """A special token as tokenizer_config.json spells it: a string or an AddedToken dict."""
    if isinstance(token, dict):
        return token.get("content")
    return token if isinstance(token, str) else None


def _added_specials(config: dict[str, Any]) -> list[Any]:
    decoder = config.get("added_tokens_decoder") or {}
    specials = [t for t in decoder.values() if isinstance(t, dict) and t.get("special")]
    return specials + list(config.get("additional_special_tokens") or [])


def _chat_template(path: str, config: dict[str, Any]) -> str | None:
    jinja = os.path.join(path, "chat_template.jinja")
    if os.path.isfile(jinja):
        with open(jinja, encoding="utf-8") as f:
            return f.read()
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def _config_eos_ids(path: str) -> list[int]:
    ids: list[int] = []
    for name in ("generation_config.json", "config.json"):
        value = _read_json(path, name).get("eos_token_id")
        if isinstance(value, int):
            ids.append(value)
        elif isinstance(value, list):
            ids += [v for v in value if isinstance(v, int)]
    return ids
