"""A :class:`Tokenizer` over a sentencepiece ``tokenizer.model`` (Llama-2 / Mistral style).

Encoding is sentencepiece's own. Special tokens written in the text (``<s>``, ``[INST]`` when
declared special) are cut out first and each remaining piece is encoded on its own, so each gets
sentencepiece's dummy-prefix space, which is what Llama-2's ``tokenizer.json`` (legacy mode) does.
Decoding follows the same rules as Hugging Face's decoder chain: ``\u2581`` -> space, byte pieces
joined into UTF-8 (invalid bytes -> U+FFFD), one leading space stripped at the very start.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

from .base import Tokenizer, end_of_generation_ids

logger = logging.getLogger(__name__)

_SPACE = "\u2581"


class SentencePieceTokenizer(Tokenizer):
    def __init__(
        self,
        model_file: str,
        *,
        bos_token: str | None,
        eos_tokens: Iterable[str | int | None],
        add_bos: bool,
        chat_template: str | None,
        extra_special: Iterable[str] = (),
    ) -> None:
        try:
            import sentencepiece
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("tokenizer.model needs the 'sentencepiece' package") from e
        self._sp = sentencepiece.SentencePieceProcessor(model_file=model_file)
        sp = self._sp
        self._n = sp.get_piece_size()
        self._pieces = [sp.id_to_piece(i) for i in range(self._n)]
        self._byte = [sp.is_byte(i) for i in range(self._n)]
        special = {i for i in range(self._n) if sp.is_control(i) or sp.is_unknown(i)}
        special |= {
            sp.piece_to_id(t) for t in extra_special if not sp.is_unknown(sp.piece_to_id(t))
        }
        self._special = frozenset(special)
        self.special_tokens = {self._pieces[i]: i for i in sorted(special)}
        self._split = _special_splitter(self.special_tokens)
        self._add_dummy_prefix = bool(sp.encode("a", out_type=str)[0].startswith(_SPACE))
        bos_id = self.special_tokens.get(bos_token) if bos_token else None
        if bos_id is None and sp.bos_id() >= 0:
            bos_id = sp.bos_id()
        eos_ids = [self._to_id(t) for t in eos_tokens] + [sp.eos_id() if sp.eos_id() >= 0 else None]
        super().__init__(
            bos_token_id=bos_id,
            eos_token_ids=end_of_generation_ids(eos_ids, self.special_tokens),
            add_bos=add_bos,
            chat_template=chat_template,
        )

    def _to_id(self, token: str | int | None) -> int | None:
        if token is None or isinstance(token, int):
            return token
        return self.special_tokens.get(token)

    @property
    def vocab_size(self) -> int:
        return self._n

    @property
    def special_token_ids(self) -> frozenset[int]:
        return self._special

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids: list[int] = []
        if add_special_tokens and self.add_bos and self.bos_token_id is not None:
            ids.append(self.bos_token_id)
        for i, part in enumerate(self._split(text)):
            if i % 2:
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self._sp.encode(part))
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        parts: list[str] = []
        pending = bytearray()
        for i in ids:
            if not 0 <= i < self._n or (skip_special_tokens and i in self._special):
                continue
            if self._byte[i]:
                pending.append(int(self._pieces[i][3:5], 16))  # "<0xAB>"
                continue
            if pending:
                parts.append(pending.decode("utf-8", errors="replace"))
                pending.clear()
            parts.append(self._pieces[i].replace(_SPACE, " "))
        if pending:
            parts.append(pending.decode("utf-8", errors="replace"))
        text = "".join(parts)
        if self._add_dummy_prefix and text.startswith(" "):
            text = text[1:]
        return text

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self._pieces[i] if 0 <= i < self._n else "" for i in ids]


def _special_splitter(specials: dict[str, int]):
    """A function cutting text into [plain, special, plain, special, ..., plain]."""
    names = sorted((t for t in specials if t), key=len, reverse=True)
    if not names:
        return lambda text: [text]
    pattern = re.compile("(" + "|".join(re.escape(t) for t in names) + ")")
    return pattern.split
