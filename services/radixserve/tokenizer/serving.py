"""What both front doors (gRPC ``Generate`` and the OpenAI HTTP API) do with a built request.

Transport-free. :meth:`Serving.generate` runs a client request: its ``n`` samples (``samples``),
interleaved into one stream whose chunks carry the sample's index, tracked in the metrics, and,
for a chat with tools, with each sample's text split into content and tool-call deltas
(:class:`ToolChunk`). The doors only turn what it yields into their own messages.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from radixserve.common.outputs import FinishKind
from radixserve.tokenizer.manager import Chunk, RequestManager
from radixserve.tokenizer.metrics import TokenizerMetrics
from radixserve.tokenizer.prompts import GenerateInput
from radixserve.tokenizer.samples import expand, interleave
from radixserve.tokenizer.tool_calls import ToolParser
from radixserve.tokenizer.tool_stream import ToolStream

logger = logging.getLogger(__name__)


@dataclass
class ToolChunk(Chunk):
    """A chunk of a request with tools: ``text`` is content only, ``tool_calls`` holds OpenAI
    ``tool_calls`` delta entries, and ``finish_reason`` is ``tool_calls`` instead of ``stop``
    once the sample called a tool."""

    tool_calls: list[dict[str, Any]] = field(default_factory=list)


_CHUNK_FIELDS = tuple(f.name for f in dataclasses.fields(Chunk))


class ChoiceStreams:
    """The :class:`ToolStream` of each choice (sample) of one request, made as chunks come."""

    def __init__(self, parser: ToolParser) -> None:
        self.parser = parser
        self.streams: dict[int, ToolStream] = {}

    def split(self, chunk: Chunk) -> ToolChunk:
        """``chunk`` with its new text split into content and call deltas."""
        stream = self.streams.get(chunk.index)
        if stream is None:
            stream = self.streams[chunk.index] = self.parser.stream()
        reason = chunk.finish_reason
        out = stream.feed(chunk.text, final=reason is not None)
        split = ToolChunk(**{name: getattr(chunk, name) for name in _CHUNK_FIELDS})
        split.text, split.tool_calls = out.content, out.tool_calls
        if reason == FinishKind.STOP and stream.called:
            split.finish_reason = FinishKind.TOOL_CALLS.value
        return split


class Serving:
    """Runs built requests for a door: see the module docstring."""

    def __init__(self, manager: RequestManager, metrics: TokenizerMetrics) -> None:
        self.manager = manager
        self.metrics = metrics

    def generate(
        self, reqs: list[GenerateInput], n: int = 1, tools: ToolParser | None = None
    ) -> AsyncIterator[Chunk]:
        """The chunks of every request's ``n`` samples; ``index`` is request * n + sample (as
        OpenAI's choices). The samples go upstream now, together (one message, one scheduler):
        the manager's refusals (overloaded, draining, a running rid) raise here.

        NOTE: iterate the stream at once and close it when done: closing it aborts what has not
        finished, but a stream never started cannot abort (its generators never ran).
        """
        samples = [s for r in reqs for s in expand(r, n)]
        if len(samples) == 1:
            chunks = self.manager.generate(samples[0])
        else:
            chunks = interleave(self.manager.generate_many(samples))
        return self._tracked(chunks, reqs[0], ChoiceStreams(tools) if tools is not None else None)

    async def _tracked(
        self, chunks: AsyncIterator[Chunk], req: GenerateInput, tools: ChoiceStreams | None
    ) -> AsyncIterator[Chunk]:
        try:
            async with self.metrics.track(req) as track:
                async for chunk in chunks:
                    track.chunk(chunk)
                    yield chunk if tools is None else tools.split(chunk)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]  # aborts unless it finished
