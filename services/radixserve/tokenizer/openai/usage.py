"""The ``usage`` object of an answer, as SGLang's ``usage_processor`` computes it.

Each prompt counts once, however many choices (``n``) it has; completions add up; cached tokens
are the best reuse of each prompt among its choices.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from radixserve.tokenizer.manager import Chunk

logger = logging.getLogger(__name__)


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def usage_of(totals: Sequence[Chunk], per_prompt: int, prompt_len: int) -> dict[str, Any]:
    """``totals``: one merged chunk per choice, by index, ``per_prompt`` choices per prompt;
    ``prompt_len``: the prompts' length, for when no chunk reported it."""
    completion = sum(t.completion_tokens or len(t.token_ids) for t in totals)
    k = max(per_prompt, 1)
    groups = [totals[i : i + k] for i in range(0, len(totals), k)]
    prompt = sum(max((t.prompt_tokens for t in g), default=0) for g in groups) or prompt_len
    cached = sum(max((t.cached_tokens for t in g), default=0) for g in groups)
    return usage(prompt, completion, cached)


def new_totals(n: int) -> list[Chunk]:
    """One empty chunk per choice, to merge each choice's chunks into."""
    return [Chunk(index=i) for i in range(n)]
