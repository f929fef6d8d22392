"""A :class:`Tokenizer` over a Hugging Face ``tokenizers.Tokenizer`` (tokenizer.json or GGUF)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import tokenizers

from .base import Tokenizer, end_of_generation_ids

logger = logging.getLogger(__name__)


class TokenizersTokenizer(Tokenizer):
    """Wraps a ``tokenizers.Tokenizer``; added tokens marked special are the special tokens.

    BOS: prepended by :meth:`encode` when ``add_bos`` is set and the tokenizer's own post-processor
    has not already put it there (so a Llama-3 ``tokenizer.json`` adding it itself gets one BOS).
    """

    def __init__(
        self,
        tok: tokenizers.Tokenizer,
        *,
        bos_token_id: int | None,
        eos_token_ids: Iterable[int | None],
        add_bos: bool,
        chat_template: str | None,
    ) -> None:
        self._tok = tok
        added = tok.get_added_tokens_decoder()
        self._special = frozenset(i for i, t in added.items() if t.special)
        self.special_tokens = {added[i].content: i for i in sorted(self._special)}
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_ids=end_of_generation_ids(eos_token_ids, self.special_tokens),
            add_bos=add_bos or self._post_processor_adds(bos_token_id),
            chat_template=chat_template,
        )
        self._vocab_size = tok.get_vocab_size(with_added_tokens=True)

    def _post_processor_adds(self, bos_token_id: int | None) -> bool:
        ids = self._tok.encode("", add_special_tokens=True).ids
        return bos_token_id is not None and ids[:1] == [bos_token_id]

    @property
    def backend(self) -> tokenizers.Tokenizer:
        return self._tok

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def special_token_ids(self) -> frozenset[int]:
        return self._special

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=add_special_tokens).ids
        bos = self.bos_token_id
        if add_special_tokens and self.add_bos and bos is not None and ids[:1] != [bos]:
            ids.insert(0, bos)
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        n = self._vocab_size
        valid = [i for i in ids if 0 <= i < n]
        return self._tok.decode(valid, skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self._tok.id_to_token(i) or "" if 0 <= i < self._vocab_size else "" for i in ids]
