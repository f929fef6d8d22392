"""A stand-in vocabulary for dummy (random-weight) models: one whole character per id.

A dummy model has no vocabulary, yet the API must still turn text into ids and ids into text so
that it can be driven end to end (benchmarks, tests). Every id here decodes, alone, to one
complete character, so a streamed response shows text at exactly the pace tokens are made: a
byte-level stand-in makes random ids decode to lone UTF-8 continuation bytes, which the
incremental detokenizer rightly holds back, and clients then measure decoding accidents rather
than token latency.

Ids 0, 1, 2 are ``<unk>``, ``<s>`` and ``</s>``; ids 3 and 4 are ``\\n`` and ``\\t`` (so chat
templates keep their shape); from id 5 on come the printable characters in code point order
(ASCII first), skipping combining marks (they would merge into their neighbour) and U+FFFD (the
detokenizer reads it as an incomplete character). Python's Unicode tables have about 142,000 such
characters; a larger vocabulary wraps around, so ids past that decode like a smaller id. Text
characters outside the vocabulary encode to ``<unk>``.
"""

from __future__ import annotations

import functools
import logging
import sys
import unicodedata
from collections.abc import Sequence

from .byte_level import OFFSET, SPECIALS, StandInTokenizer

logger = logging.getLogger(__name__)

WHITESPACE = ("\n", "\t")
# Ids the model may emit are sized by its config; tiny test configs still get every ASCII glyph.
MIN_VOCAB = OFFSET + len(WHITESPACE) + 95


@functools.lru_cache(maxsize=4)
def characters(count: int) -> tuple[str, ...]:
    """The first ``count`` characters of the vocabulary (fewer if Unicode has fewer)."""
    chars = list(WHITESPACE)
    for code in range(sys.maxunicode + 1):
        if len(chars) >= count:
            break
        ch = chr(code)
        if ch.isprintable() and ch != "\ufffd" and not unicodedata.category(ch).startswith("M"):
            chars.append(ch)
    return tuple(chars)


class CharTokenizer(StandInTokenizer):
    """One printable character per id; no chat template (the default ChatML template applies)."""

    def __init__(self, vocab_size: int = MIN_VOCAB, add_bos: bool = False) -> None:
        super().__init__(max(vocab_size, MIN_VOCAB), add_bos)
        self._chars = characters(self._vocab_size - OFFSET)
        if len(self._chars) < self._vocab_size - OFFSET:
            logger.info(
                "stand-in vocabulary: %d characters for %d ids; higher ids wrap around",
                len(self._chars), self._vocab_size,
            )  # fmt: skip
        self._ids = {ch: OFFSET + i for i, ch in enumerate(self._chars)}

    def _text_ids(self, text: str) -> list[int]:
        return [self._ids.get(ch, 0) for ch in text]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return "".join(self._spell(i) for i in ids if not (skip_special_tokens and 0 <= i < OFFSET))

    def _spell(self, i: int) -> str:
        if 0 <= i < OFFSET:
            return SPECIALS[i]
        if OFFSET <= i < self._vocab_size:
            return self._chars[(i - OFFSET) % len(self._chars)]
        return ""
