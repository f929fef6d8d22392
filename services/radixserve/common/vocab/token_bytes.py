"""The exact bytes of each token, whatever the vocabulary style.

Decoding one token alone loses bytes: a byte-fallback token (``<0xF0>``) or one byte of an emoji
split by byte-level BPE decodes to U+FFFD. The OpenAI logprob ``bytes`` field and the grammar
engine need the token's own bytes, so they are read from its spelling:

* ``<0xXX>`` (sentencepiece byte fallback, and the dummy byte tokenizer): that byte;
* byte-level BPE (GPT-2 style, ``Ġ`` for a space): the inverse of GPT-2's byte-to-unicode map;
* otherwise (sentencepiece pieces): ``▁`` is a space, the rest is UTF-8.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence

from radixserve.common.vocab.base import Tokenizer

logger = logging.getLogger(__name__)

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@functools.lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's ``bytes_to_unicode``: printable bytes map to themselves, others up."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def is_byte_level(tokenizer: Tokenizer) -> bool:
    """True for byte-level BPE vocabularies (a space is spelled ``Ġ``)."""
    backend = getattr(tokenizer, "backend", None)
    decoder = getattr(backend, "decoder", None)
    return type(decoder).__name__ == "ByteLevel"


def token_bytes(tokenizer: Tokenizer, ids: Sequence[int]) -> list[bytes]:
    """The bytes each token of ``ids`` stands for (``b""`` for an unknown id)."""
    spellings = tokenizer.convert_ids_to_tokens(list(ids))
    byte_level = is_byte_level(tokenizer)
    special = tokenizer.special_token_ids
    pairs = zip(ids, spellings, strict=True)
    return [spelling_bytes(s, byte_level and i not in special) for i, s in pairs]


def spelling_bytes(spelling: str, byte_level: bool) -> bytes:
    """The bytes of one token from its vocabulary spelling (see the module docstring)."""
    m = _BYTE_TOKEN.fullmatch(spelling)
    if m:
        return bytes([int(m.group(1), 16)])
    if byte_level:
        table = _unicode_to_byte()
        if all(c in table for c in spelling):
            return bytes(table[c] for c in spelling)
    return spelling.replace("\u2581", " ").encode("utf-8")
