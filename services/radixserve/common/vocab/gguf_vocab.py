"""Build a tokenizer from the vocabulary stored in a GGUF file's metadata.

Supported ``tokenizer.ggml.model`` values: ``gpt2`` (byte-level BPE) and ``llama``
(sentencepiece-style BPE with byte fallback, rebuilt as a ``tokenizers`` BPE whose merges come
from the token scores, as transformers' GGUF loader does).
"""

from __future__ import annotations

import logging
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from .hf_tokenizers import TokenizersTokenizer

logger = logging.getLogger(__name__)

# llama.cpp token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# llama.cpp splits these with "\p{N}" before the GPT-2 regex: every digit is its own word,
# which is what SmolLM's tokenizer.json does with a Digits(individual_digits) pre-tokenizer.
_DIGIT_SPLIT_PRE = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}
_GPT2_PRE = {"default", "gpt2", "gpt-2", "mpt", "olmo", "jais"}
_REGEX_PRE = {"llama3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT}
_REGEX_PRE |= {"dbrx": _LLAMA3_SPLIT, "smaug-bpe": _LLAMA3_SPLIT, "qwen2": _QWEN2_SPLIT}
_REGEX_PRE |= {"deepseek-r1-qwen": _QWEN2_SPLIT}


def read_gguf_tokenizer_fields(path: str) -> dict[str, Any]:
    """The ``tokenizer.*`` metadata of a GGUF file, keys without the ``tokenizer.`` prefix."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            out[key.removeprefix("tokenizer.")] = field.contents()
    return out


def load_gguf_tokenizer(path: str) -> TokenizersTokenizer:
    meta = read_gguf_tokenizer_fields(path)
    kind = meta.get("ggml.model")
    if kind == "gpt2":
        tok = _byte_level_bpe(meta)
        default_add_bos = False
    elif kind == "llama":
        tok = _sentencepiece_bpe(meta)
        default_add_bos = True
    else:
        raise ValueError(
            f"{path}: unsupported GGUF tokenizer model {kind!r} (supported: 'gpt2', 'llama')"
        )
    _add_special_tokens(tok, meta)
    eos = [meta.get("ggml.eos_token_id"), meta.get("ggml.eot_token_id")]
    return TokenizersTokenizer(
        tok,
        bos_token_id=meta.get("ggml.bos_token_id"),
        eos_token_ids=eos,
        add_bos=bool(meta.get("ggml.add_bos_token", default_add_bos)),
        chat_template=meta.get("chat_template"),
    )


def _vocab(tokens: list[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for i, token in enumerate(tokens):
        vocab.setdefault(token, i)  # NOTE: first id wins for a duplicated spelling
    return vocab


def _byte_level_bpe(meta: dict[str, Any]) -> HFTokenizer:
    merges = [tuple(m.split(" ", 1)) for m in meta.get("ggml.merges", [])]
    model = models.BPE(_vocab(meta["ggml.tokens"]), merges, fuse_unk=False, byte_fallback=False)
    tok = HFTokenizer(model)
    tok.pre_tokenizer = _byte_level_pre_tokenizer(meta.get("ggml.pre", "default"))
    tok.decoder = decoders.ByteLevel()
    return tok


def _byte_level_pre_tokenizer(pre: str) -> pre_tokenizers.PreTokenizer:
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _DIGIT_SPLIT_PRE:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if pre in _REGEX_PRE:
        split = pre_tokenizers.Split(Regex(_REGEX_PRE[pre]), behavior="isolated")
        no_regex = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        return pre_tokenizers.Sequence([split, no_regex])
    if pre not in _GPT2_PRE:
        logger.warning("GGUF pre-tokenizer %r unknown; splitting text like GPT-2", pre)
    return byte_level


def _sentencepiece_bpe(meta: dict[str, Any]) -> HFTokenizer:
    tokens: list[str] = meta["ggml.tokens"]
    types: list[int] = meta.get("ggml.token_type") or [NORMAL] * len(tokens)
    scores: list[float] = meta.get("ggml.scores") or [0.0] * len(tokens)
    unk_id = meta.get("ggml.unknown_token_id", 0)
    model = models.BPE(
        _vocab(tokens),
        _merges_from_scores(tokens, types, scores),
        unk_token=tokens[unk_id] if unk_id is not None else None,
        fuse_unk=True,
        byte_fallback=True,
    )
    tok = HFTokenizer(model)
    steps: list[normalizers.Normalizer] = [normalizers.Replace(" ", "\u2581")]
    add_prefix = bool(meta.get("ggml.add_space_prefix", True))
    if add_prefix:
        steps.insert(0, normalizers.Prepend("\u2581"))
    tok.normalizer = normalizers.Sequence(steps)
    chain = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix:
        chain.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(chain)
    return tok


def _merges_from_scores(
    tokens: list[str], types: list[int], scores: list[float]
) -> list[tuple[str, str]]:
    """Every split of a normal token into two normal tokens, best-scored merged token first."""
    mergeable = {t: i for i, t in enumerate(tokens) if types[i] in (NORMAL, USER_DEFINED)}
    ranked: list[tuple[float, int, tuple[str, str]]] = []
    for token, i in mergeable.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in mergeable and right in mergeable:
                ranked.append((-scores[i], i, (left, right)))
    ranked.sort()
    return [pair for _, _, pair in ranked]


def _add_special_tokens(tok: HFTokenizer, meta: dict[str, Any]) -> None:
    tokens: list[str] = meta["ggml.tokens"]
    types: list[int] = meta.get("ggml.token_type") or []
    special = [
        AddedToken(t, normalized=False, special=True)
        for t, kind in zip(tokens, types, strict=False)
        if kind in (CONTROL, UNKNOWN)
    ]
    user = [
        AddedToken(t, normalized=False, special=False)
        for t, kind in zip(tokens, types, strict=False)
        if kind == USER_DEFINED
    ]
    tok.add_special_tokens(special)
    tok.add_tokens(user)
