"""The tokenizer interface every backend implements, and what the backends share."""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterable, Sequence

logger = logging.getLogger(__name__)

# Tokens that end a generation when a model marks them special (llama.cpp's end-of-generation
# list does the same): a chat model stops on its end-of-turn token, not only on its eos.
END_OF_GENERATION_TOKENS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|return|>",
)


class Tokenizer(abc.ABC):
    """Text <-> token ids for one model, plus the special tokens a server needs.

    ``eos_token_ids`` holds every id that ends a generation: the model's eos and the end-of-turn
    token its chat template writes (``<|im_end|>``, ``<|eot_id|>``...).
    """

    def __init__(
        self,
        *,
        bos_token_id: int | None,
        eos_token_ids: Iterable[int],
        add_bos: bool,
        chat_template: str | None,
    ) -> None:
        self.bos_token_id = bos_token_id
        self.eos_token_ids: tuple[int, ...] = tuple(dict.fromkeys(eos_token_ids))
        self.add_bos = add_bos
        self.chat_template = chat_template

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""

    @property
    @abc.abstractmethod
    def special_token_ids(self) -> frozenset[int]:
        """Ids that ``decode(..., skip_special_tokens=True)`` drops."""

    @abc.abstractmethod
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``; ``add_special_tokens`` adds BOS where the model wants it.

        Special tokens written in the text (``<|im_start|>``) become their ids.
        """

    @abc.abstractmethod
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; invalid UTF-8 becomes U+FFFD, unknown ids are ignored."""

    @abc.abstractmethod
    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        """The vocabulary spelling of each id (``''`` for an id outside the vocabulary)."""

    @property
    def max_token_id(self) -> int:
        return self.vocab_size - 1

    @property
    def eos_token_id(self) -> int | None:
        return self.eos_token_ids[0] if self.eos_token_ids else None

    @property
    def bos_token(self) -> str | None:
        return self._token_or_none(self.bos_token_id)

    @property
    def eos_token(self) -> str | None:
        return self._token_or_none(self.eos_token_id)

    def _token_or_none(self, token_id: int | None) -> str | None:
        if token_id is None:
            return None
        return self.convert_ids_to_tokens([token_id])[0]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, bos={self.bos_token!r}, "
            f"eos_ids={self.eos_token_ids}, add_bos={self.add_bos})"
        )


def end_of_generation_ids(
    eos_ids: Iterable[int | None], special_tokens: dict[str, int]
) -> list[int]:
    """``eos_ids`` (None dropped) followed by the known end-of-turn tokens the model has."""
    ids = [i for i in eos_ids if i is not None]
    ids += [special_tokens[t] for t in END_OF_GENERATION_TOKENS if t in special_tokens]
    return list(dict.fromkeys(ids))
