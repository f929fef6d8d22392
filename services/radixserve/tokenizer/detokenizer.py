"""Incremental detokenization: token ids in, only new and complete text out.

Decoding token by token is wrong twice over: a byte-level token can hold half of a UTF-8
character, and sentencepiece drops the space in front of the first token it decodes. So, like
vLLM's ``detokenize_incrementally`` and SGLang's ``surr_offset``/``read_offset``, each step decodes
a short window of already-emitted tokens (``ids[prefix_offset:read_offset]``) and the same window
plus the new tokens (``ids[prefix_offset:]``); the new text is what the second adds to the first.
When it ends in U+FFFD the last character is probably incomplete: nothing is emitted and the
tokens wait for the next call (or :meth:`IncrementalDetokenizer.flush`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from radixserve.common.vocab.base import Tokenizer

logger = logging.getLogger(__name__)

REPLACEMENT_CHAR = "\ufffd"
# Prompt tokens kept as left context: enough for the leading-space rule and a split character.
PROMPT_CONTEXT = 5


class IncrementalDetokenizer:
    """Turns one request's generated ids into text, a chunk at a time.

    ``prompt_ids`` (optional) gives the tokens before the generated ones, so that the first
    generated token decodes as it does in context (sentencepiece keeps its leading space).
    Only the last few prompt tokens are kept. The concatenation of every :meth:`feed` and the
    final :meth:`flush` equals ``tokenizer.decode(generated_ids)`` (decoded after the prompt).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        skip_special_tokens: bool = True,
        prompt_ids: Sequence[int] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self._ids: list[int] = list(prompt_ids[-PROMPT_CONTEXT:]) if prompt_ids else []
        self._prefix_offset = 0
        self._read_offset = len(self._ids)
        self.num_generated = 0
        self._chunks: list[str] = []

    @property
    def text(self) -> str:
        """Everything emitted so far."""
        return "".join(self._chunks)

    def feed(self, ids: Sequence[int]) -> str:
        """Append generated ``ids``; return the text they complete (possibly ``""``)."""
        if not ids:
            return ""
        self._ids.extend(ids)
        self.num_generated += len(ids)
        prefix_text, full_text = self._window_texts()
        if len(full_text) <= len(prefix_text) or full_text.endswith(REPLACEMENT_CHAR):
            return ""
        return self._emit(full_text[len(prefix_text) :])

    def flush(self) -> str:
        """The text still held back (an incomplete character shows as U+FFFD)."""
        if self._read_offset >= len(self._ids):
            return ""
        prefix_text, full_text = self._window_texts()
        return self._emit(full_text[len(prefix_text) :])

    def _window_texts(self) -> tuple[str, str]:
        decode = self.tokenizer.decode
        skip = self.skip_special_tokens
        window = self._ids[self._prefix_offset :]
        prefix_len = self._read_offset - self._prefix_offset
        prefix_text = decode(window[:prefix_len], skip_special_tokens=skip) if prefix_len else ""
        return prefix_text, decode(window, skip_special_tokens=skip)

    def _emit(self, new_text: str) -> str:
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        # NOTE: only the window is ever decoded again; drop what lies before it.
        if self._prefix_offset > 0:
            del self._ids[: self._prefix_offset]
            self._read_offset -= self._prefix_offset
            self._prefix_offset = 0
        if new_text:
            self._chunks.append(new_text)
        return new_text
