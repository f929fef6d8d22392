"""A vocabulary-free tokenizer for dummy (random-weight) models.

A dummy model has no vocabulary, yet the API must still turn text into ids and ids into text so
that such a model can be driven end to end (benchmarks, tests). Ids 0, 1, 2 are ``<unk>``, ``<s>``
and ``</s>``; id ``3 + b`` is byte ``b``. A model whose vocabulary is larger samples ids past 258:
those decode as byte ``(id - 3) % 256``, so every id the model can produce has a spelling.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .base import Tokenizer

logger = logging.getLogger(__name__)

SPECIALS = ("<unk>", "<s>", "</s>")
OFFSET = len(SPECIALS)
BYTE_VOCAB = OFFSET + 256


class StandInTokenizer(Tokenizer):
    """What the dummy models' stand-in vocabularies share: the three specials first, matched in
    the text; a subclass spells the rest (``_text_ids``, ``_spell``, ``decode``)."""

    def __init__(self, vocab_size: int, add_bos: bool) -> None:
        super().__init__(bos_token_id=1, eos_token_ids=(2,), add_bos=add_bos, chat_template=None)
        self._vocab_size = vocab_size
        self._lookup = {t: i for i, t in enumerate(SPECIALS)}

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def special_token_ids(self) -> frozenset[int]:
        return frozenset(range(OFFSET))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [1] if add_special_tokens and self.add_bos else []
        # NOTE: the specials' spellings are matched in the text, like a real tokenizer would.
        for i, part in enumerate(_split_specials(text)):
            if i % 2:
                ids.append(self._lookup[part])
            else:
                ids.extend(self._text_ids(part))
        return ids

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self._spell(i) for i in ids]

    def _text_ids(self, text: str) -> list[int]:
        raise NotImplementedError

    def _spell(self, i: int) -> str:
        raise NotImplementedError


class ByteTokenizer(StandInTokenizer):
    """UTF-8 bytes as tokens; no chat template (the default ChatML template applies)."""

    def __init__(self, vocab_size: int = BYTE_VOCAB, add_bos: bool = False) -> None:
        super().__init__(max(vocab_size, BYTE_VOCAB), add_bos)

    def _text_ids(self, text: str) -> list[int]:
        return [OFFSET + b for b in text.encode("utf-8")]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        out = bytearray()
        for i in ids:
            if 0 <= i < OFFSET:
                if not skip_special_tokens:
                    out += SPECIALS[i].encode()
            elif OFFSET <= i < self._vocab_size:
                out.append((i - OFFSET) % 256)
        return out.decode("utf-8", errors="replace")

    def _spell(self, i: int) -> str:
        if 0 <= i < OFFSET:
            return SPECIALS[i]
        if OFFSET <= i < self._vocab_size:
            return f"<0x{(i - OFFSET) % 256:02X}>"
        return ""


def _split_specials(text: str) -> list[str]:
    parts: list[str] = []
    rest = text
    while True:
        hits = [(rest.find(s), s) for s in SPECIALS if s in rest]
        if not hits:
            parts.append(rest)
            return parts
        pos, tok = min(hits)
        parts += [rest[:pos], tok]
        rest = rest[pos + len(tok) :]
