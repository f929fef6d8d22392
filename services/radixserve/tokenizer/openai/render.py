"""Response bodies and stream events of the two generating endpoints, for one request.

:class:`Format` renders ``/v1/completions``; :class:`ChatFormat` refines it for
``/v1/chat/completions``. Both build dicts (the general path) and encode the per-token case, a
plain text delta, straight from a template (the fast path). The template is derived from the same
dict builders (``_event_dict``, ``_text_delta``), so a field added to a choice or the envelope
reaches both paths.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from typing import Any, NamedTuple

from radixserve.common.outputs import FinishKind
from radixserve.common.vocab.loading import Tokenizer
from radixserve.tokenizer.manager import Chunk
from radixserve.tokenizer.openai import sse
from radixserve.tokenizer.openai.logprobs import chat_logprobs, completion_logprobs
from radixserve.tokenizer.openai.usage import usage_of
from radixserve.tokenizer.serving import ToolChunk

logger = logging.getLogger(__name__)

# The reasons OpenAI's API knows (``tool_calls`` only from a chat with tools, see _tool_delta).
FINISH_REASONS = (FinishKind.STOP.value, FinishKind.LENGTH.value, FinishKind.ABORT.value)
_TOOL_CALLS = FinishKind.TOOL_CALLS.value
# Stand-ins for the values a template leaves open (NULs: no key or fixed value of an event has one).
_CHOICE, _INDEX, _TEXT = "\x00choice\x00", "\x00index\x00", "\x00text\x00"


def finish_reason(reason: str | None) -> str | None:
    """The engine's reason as OpenAI names it; any other (a future one) is ``abort``."""
    return reason if reason in FINISH_REASONS or reason is None else "abort"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class _Frame(NamedTuple):
    """One request's stream event around its choice, as encoded text."""

    head: str  # "data: {...,"choices":["
    tail: str  # "]}\n\n" or '],"usage":null}\n\n'
    plain: str  # the whole event of a plain text delta: a %-template of (index, text JSON)


class Format:
    """Response shapes of one endpoint, for one request (ids, creation time, logprob offsets)."""

    id_prefix = "cmpl"
    object_name = "text_completion"
    chunk_object = "text_completion"

    def __init__(self, model: str, tokenizer: Tokenizer, logprobs: bool, top: int = 0) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.logprobs = logprobs
        self.top = top  # top logprobs per position
        self.id = new_id(self.id_prefix)
        self.created = now()
        self.per_prompt = 1  # choices per prompt (n); a batch of prompts has several groups
        self.echo: list[str] = []  # completions with echo: each prompt's text
        self.tool_parser: Any = None  # chat with tools: a tool_calls.ToolParser
        self._echoed: set[int] = set()
        self._text_offset: dict[int, int] = {}  # per sample: characters of tokens already sent

    def envelope(self, obj: str, choices: list[Any]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def head(self, with_usage: bool, n: int = 1) -> list[dict[str, Any]]:
        """Stream events sent before the first chunk."""
        return []

    def chunk(self, chunk: Chunk, with_usage: bool) -> dict[str, Any] | None:
        """The stream event of ``chunk``; None when it carries nothing to tell."""
        choice = self.delta(chunk)
        return None if choice is None else self._event_dict(choice, with_usage)

    def _event_dict(self, choice: Any, with_usage: bool) -> dict[str, Any]:
        event = self.envelope(self.chunk_object, [choice])
        if with_usage:
            event["usage"] = None
        return event

    def event(self, chunk: Chunk, with_usage: bool) -> str | None:
        """``sse.event(self.chunk(chunk, with_usage))``, byte for byte, built faster: the frame
        is encoded once per stream and a plain text delta (the per-token case) is one template."""
        frame = self._frame_usage if with_usage else self._frame_no_usage
        text = self._plain(chunk)
        if text is not None:
            return frame.plain % (chunk.index, sse.dumps(text))
        choice = self.delta(chunk)
        return None if choice is None else frame.head + sse.dumps(choice) + frame.tail

    @functools.cached_property
    def _frame_no_usage(self) -> _Frame:
        return self._frame(with_usage=False)

    @functools.cached_property
    def _frame_usage(self) -> _Frame:
        return self._frame(with_usage=True)

    def _frame(self, with_usage: bool) -> _Frame:
        # NOTE: tests/tokenizer/test_sse_events.py checks the fast path against the dict path.
        head, tail = sse.split_event(self._event_dict(_CHOICE, with_usage), _CHOICE)
        choice = _plain_choice(type(self))
        return _Frame(head, tail, sse.escape(head) + choice + sse.escape(tail))

    def _plain(self, chunk: Chunk) -> str | None:
        """The text of a chunk that is text and nothing else (no logprobs, echo or finish)."""
        if chunk.finish_reason is not None or not chunk.text or self.logprobs or self.echo:
            return None
        return chunk.text

    def usage_chunk(self, totals: list[Chunk], prompt_len: int) -> dict[str, Any]:
        usage = usage_of(totals, self.per_prompt, prompt_len)
        return {**self.envelope(self.chunk_object, []), "usage": usage}

    def response(self, totals: list[Chunk], prompt_len: int) -> dict[str, Any]:
        """The whole answer; ``totals`` has one merged chunk per sample, by index."""
        body = self.envelope(self.object_name, [self.full(t) for t in totals])
        return {**body, "usage": usage_of(totals, self.per_prompt, prompt_len)}

    # ---- completions' choices; ChatFormat overrides these ----

    @classmethod
    def _choice(cls, index: Any, text: str, logprobs: Any, reason: str | None) -> dict[str, Any]:
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason}

    @classmethod
    def _text_delta(cls, index: Any, text: str) -> dict[str, Any]:
        """The choice of a plain text delta (what :meth:`_plain` finds)."""
        return cls._choice(index, text, None, None)

    def _text(self, chunk: Chunk) -> str:
        """The chunk's text, after the prompt's with echo (once per choice)."""
        if not self.echo or chunk.index in self._echoed:
            return chunk.text
        self._echoed.add(chunk.index)
        return self.echo[chunk.index // max(self.per_prompt, 1)] + chunk.text

    def delta(self, chunk: Chunk) -> dict[str, Any] | None:
        if (
            not chunk.text
            and chunk.finish_reason is None
            and not (self.logprobs and chunk.logprobs)
            and not (self.echo and chunk.index not in self._echoed)
        ):
            return None
        return self.full(chunk)

    def full(self, chunk: Chunk) -> dict[str, Any]:
        text = self._text(chunk)
        logprobs = self.token_logprobs(chunk) if self.logprobs else None
        return self._choice(chunk.index, text, logprobs, finish_reason(chunk.finish_reason))

    def token_logprobs(self, chunk: Chunk) -> dict[str, Any]:
        offset = self._text_offset.get(chunk.index, 0)
        body, self._text_offset[chunk.index] = completion_logprobs(
            self.tokenizer, chunk, offset, bool(self.top)
        )
        return body


CompletionFormat = Format


@functools.cache
def _plain_choice(fmt: type[Format]) -> str:
    """The choice of a plain text delta as a %-template of (index, text JSON); once per class."""
    return sse.template(fmt._text_delta(_INDEX, _TEXT), _INDEX, _TEXT)


class ChatFormat(Format):
    id_prefix = "chatcmpl"
    object_name = "chat.completion"
    chunk_object = "chat.completion.chunk"

    def _plain(self, chunk: Chunk) -> str | None:
        return None if isinstance(chunk, ToolChunk) else super()._plain(chunk)

    @classmethod
    def _choice(cls, index: Any, delta: Any, logprobs: Any, reason: str | None) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}

    @classmethod
    def _text_delta(cls, index: Any, text: str) -> dict[str, Any]:
        return cls._choice(index, {"content": text}, None, None)

    def head(self, with_usage: bool, n: int = 1) -> list[dict[str, Any]]:
        role = {"role": "assistant", "content": ""}
        return [self._event_dict(self._choice(i, role, None, None), with_usage) for i in range(n)]

    def delta(self, chunk: Chunk) -> dict[str, Any] | None:
        if isinstance(chunk, ToolChunk):
            return self._tool_delta(chunk)
        if not chunk.text and chunk.finish_reason is None and not chunk.logprobs:
            return None
        delta = {"content": chunk.text} if chunk.text else {}
        logprobs = self.token_logprobs(chunk) if self.logprobs else None
        return self._choice(chunk.index, delta, logprobs, finish_reason(chunk.finish_reason))

    def _tool_delta(self, chunk: ToolChunk) -> dict[str, Any] | None:
        """With tools, text streams as content up to what may be a tool call; then each call
        streams as OpenAI's do (the shared layer's ``serving.ChoiceStreams`` split the text): a
        first delta with its index, id, name and the arguments so far, then the arguments piece
        by piece."""
        reason = chunk.finish_reason
        with_logprobs = self.logprobs and bool(chunk.logprobs)
        if not chunk.text and not chunk.tool_calls and reason is None and not with_logprobs:
            return None
        delta: dict[str, Any] = {"content": chunk.text} if chunk.text else {}
        if chunk.tool_calls:
            delta["tool_calls"] = chunk.tool_calls
        reason = reason if reason == _TOOL_CALLS else finish_reason(reason)
        logprobs = self.token_logprobs(chunk) if self.logprobs else None
        return self._choice(chunk.index, delta, logprobs, reason)

    def full(self, chunk: Chunk) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": chunk.text}
        reason = finish_reason(chunk.finish_reason)
        if self.tool_parser is not None:
            # NOTE: the stream's scan fed at once: content without the model's markup, and a
            # call cut by max_tokens kept with its partial arguments (finish_reason length), as
            # a streamed answer sends them (tool_stream's docstring).
            content, calls = self.tool_parser.parse(chunk.text)
            message["content"] = content
            if calls:
                message = {"role": "assistant", "content": content or None, "tool_calls": calls}
                reason = _TOOL_CALLS if reason == FinishKind.STOP else reason
        logprobs = self.token_logprobs(chunk) if self.logprobs else None
        return {
            "index": chunk.index,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": reason,
        }

    def token_logprobs(self, chunk: Chunk) -> dict[str, Any]:
        return chat_logprobs(self.tokenizer, chunk, bool(self.top))
