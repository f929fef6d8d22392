"""Server-sent events: how every event is framed and encoded, one answer's event stream, and the
response that sends it (``data: {json}`` ... ``data: [DONE]``).

The fast path of :mod:`.render` encodes per-token events from templates; :func:`split_event` and
:func:`template` derive them from the payloads the general path encodes with :func:`event`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi.responses import StreamingResponse

from radixserve.tokenizer.manager import Chunk
from radixserve.tokenizer.openai.errors import error_body
from radixserve.tokenizer.openai.usage import new_totals

if TYPE_CHECKING:
    from radixserve.tokenizer.openai.render import Format

logger = logging.getLogger(__name__)

DONE = "data: [DONE]\n\n"
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# Compact JSON, as every response body and SSE event is encoded (bound: no Python frame per call;
# a str alone goes straight to the C encoder).
dumps = _ENCODER.encode


def event(payload: Any) -> str:
    """One SSE event of ``payload``."""
    return f"data: {dumps(payload)}\n\n"


def split_event(payload: Any, marker: str) -> tuple[str, str]:
    """``event(payload)`` cut around the encoding of ``marker``, a value inside ``payload``: the
    text before and after it, for events that differ only there."""
    head, found, tail = event(payload).partition(dumps(marker))
    if not found:
        raise ValueError(f"marker {marker!r} is not in the payload")
    return head, tail


def template(payload: Any, *markers: str) -> str:
    """``dumps(payload)`` as a %-template: each marker's encoding becomes ``%s``; the markers
    must each appear once, in the order given (the order of the values to format)."""
    text = escape(dumps(payload))
    at = 0
    for marker in markers:
        encoded = escape(dumps(marker))
        if text.count(encoded) != 1 or text.find(encoded) < at:
            raise ValueError(f"marker {marker!r} is not once in the payload, in order")
        at = text.find(encoded)
        text = text.replace(encoded, "%s")
    return text


def escape(text: str) -> str:
    """``text`` as a literal part of a %-template."""
    return text.replace("%", "%%")


async def events(
    first: Chunk,
    chunks: AsyncIterator[Chunk],
    fmt: Format,
    prompt_len: int,
    with_usage: bool,
    n: int = 1,
) -> AsyncIterator[str]:
    """The events of an answer of ``n`` choices whose ``first`` chunk came already; an engine
    failure midway is an error event. Closes ``chunks`` however it ends (abort upstream)."""
    totals = new_totals(n)
    unfinished = n
    chunk: Chunk | None = first
    try:
        for payload in fmt.head(with_usage, n):
            yield event(payload)
        while chunk is not None:
            totals[chunk.index].merge(chunk)
            if chunk.finish_reason == "error":
                yield event(error_body(chunk.error or "engine error", kind="server_error"))
                break
            text = fmt.event(chunk, with_usage)  # NOTE: event(fmt.chunk(...)), built faster
            if text is not None:
                yield text
            unfinished -= chunk.finish_reason is not None
            if unfinished == 0:
                break
            chunk = await anext(chunks, None)
        if with_usage:
            yield event(fmt.usage_chunk(totals, prompt_len))
        yield DONE
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


class SSEResponse(StreamingResponse):
    """SSE that always closes its generator, even when a send fails on a gone client."""

    media_type = "text/event-stream"

    def __init__(self, stream: AsyncIterator[str]) -> None:
        super().__init__(stream, headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[union-attr]
