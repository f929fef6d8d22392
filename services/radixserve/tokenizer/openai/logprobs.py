"""The ``logprobs`` object of a choice: completions' (parallel lists with text offsets) and
chat's (one entry per token with its bytes and alternatives)."""

from __future__ import annotations

import logging
from typing import Any

from radixserve.common.types import TopLogprobs
from radixserve.common.vocab.loading import Tokenizer
from radixserve.common.vocab.token_bytes import token_bytes
from radixserve.tokenizer.manager import Chunk

logger = logging.getLogger(__name__)


def token_str(tokenizer: Tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id])


def completion_logprobs(
    tokenizer: Tokenizer, chunk: Chunk, offset: int, with_top: bool
) -> tuple[dict[str, Any], int]:
    """The chunk's logprobs, its tokens' offsets counted from ``offset`` (characters of tokens
    sent before); returns the offset after them too."""
    tokens = [token_str(tokenizer, t) for t in chunk.token_ids[: len(chunk.logprobs)]]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    top = None
    if with_top:
        top = [_top_dict(tokenizer, t) for t in chunk.top_logprobs[: len(tokens)]]
    body = {
        "tokens": tokens,
        "token_logprobs": list(chunk.logprobs),
        "top_logprobs": top,
        "text_offset": offsets,
    }
    return body, offset


def _top_dict(tokenizer: Tokenizer, top: TopLogprobs) -> dict[str, float]:
    out: dict[str, float] = {}
    for token_id, logprob in zip(top.token_ids, top.logprobs, strict=True):
        out.setdefault(token_str(tokenizer, token_id), logprob)  # distinct ids may spell alike
    return out


def chat_logprobs(tokenizer: Tokenizer, chunk: Chunk, with_top: bool) -> dict[str, Any]:
    content = []
    tops = chunk.top_logprobs if with_top else []
    for i, (token_id, logprob) in enumerate(zip(chunk.token_ids, chunk.logprobs, strict=False)):
        top = tops[i] if i < len(tops) else None
        alternatives = (
            [_entry(tokenizer, t, lp) for t, lp in zip(top.token_ids, top.logprobs, strict=True)]
            if top is not None
            else []
        )
        content.append({**_entry(tokenizer, token_id, logprob), "top_logprobs": alternatives})
    return {"content": content}


def _entry(tokenizer: Tokenizer, token_id: int, logprob: float) -> dict[str, Any]:
    token = token_str(tokenizer, token_id)
    raw = token_bytes(tokenizer, [token_id])[0]  # its own bytes, not U+FFFD's
    return {"token": token, "logprob": logprob, "bytes": list(raw)}
