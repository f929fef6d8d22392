"""The layer both front doors share (``tokenizer/serving.py``): n samples sent together and
interleaved by index, one metrics record per client request, tool calls split out of the text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from radixserve.common.types import SamplingParams
from radixserve.tokenizer.manager import Chunk
from radixserve.tokenizer.metrics import TokenizerMetrics
from radixserve.tokenizer.prompts import GenerateInput
from radixserve.tokenizer.serving import Serving, ToolChunk
from radixserve.tokenizer.tool_calls import ToolParser


class ScriptedManager:
    """Each sample answers its script; records what went upstream together and what closed."""

    def __init__(self, scripts: list[list[Chunk]]) -> None:
        self.scripts = scripts
        self.batches: list[list[str]] = []
        self.closed: list[str] = []

    def generate(self, req: GenerateInput) -> AsyncIterator[Chunk]:
        return self.generate_many([req])[0]

    def generate_many(self, reqs: list[GenerateInput]) -> list[AsyncIterator[Chunk]]:
        self.batches.append([r.rid for r in reqs])
        return [self._stream(r.rid, self.scripts[i]) for i, r in enumerate(reqs)]

    async def _stream(self, rid: str, script: list[Chunk]) -> AsyncIterator[Chunk]:
        try:
            for chunk in script:
                await asyncio.sleep(0)
                yield Chunk(**vars(chunk))
        finally:
            self.closed.append(rid)


def _serving(manager: ScriptedManager, metrics: TokenizerMetrics | None = None) -> Serving:
    return Serving(manager, metrics or TokenizerMetrics())  # type: ignore[arg-type]


def _req(rid: str = "r") -> GenerateInput:
    return GenerateInput(rid, [1, 2, 3], SamplingParams(max_new_tokens=8))


async def _all(chunks: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in chunks]


def test_samples_go_together_and_come_back_by_index() -> None:
    script = [Chunk(text="a", token_ids=[5]), Chunk(text="b", token_ids=[6], finish_reason="stop")]
    manager = ScriptedManager([script, script])
    metrics = TokenizerMetrics()
    out = asyncio.run(_all(_serving(manager, metrics).generate([_req()], n=2)))
    assert manager.batches == [["r#0", "r#1"]]
    assert sorted((c.index, c.text) for c in out) == [(0, "a"), (0, "b"), (1, "a"), (1, "b")]
    assert metrics.requests.labels("grpc_generate", "stop")._value.get() == 1  # one request
    assert metrics.generation_tokens._value.get() == 4


def test_closing_early_closes_every_sample() -> None:
    script = [Chunk(text="a", token_ids=[5])] * 3 + [Chunk(finish_reason="length")]
    manager = ScriptedManager([script, script])

    async def go() -> None:
        chunks = _serving(manager).generate([_req()], n=2)
        await anext(chunks)
        await chunks.aclose()  # type: ignore[attr-defined]

    asyncio.run(go())
    assert sorted(manager.closed) == ["r#0", "r#1"]


def test_tools_split_content_and_calls() -> None:
    text = 'Sure<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'
    pieces = [text[:6], text[6:30], text[30:]]
    script = [Chunk(text=p, token_ids=[1]) for p in pieces]
    script[-1].finish_reason = "stop"
    manager = ScriptedManager([script])
    parser = ToolParser("hermes", {"f"})
    out = asyncio.run(_all(_serving(manager).generate([_req()], 1, parser)))
    assert all(isinstance(c, ToolChunk) for c in out)
    assert "".join(c.text for c in out) == "Sure"
    calls = [call for c in out for call in c.tool_calls]
    assert calls[0]["function"]["name"] == "f"
    assert "".join(c["function"]["arguments"] for c in calls) == '{"x": 1}'
    assert out[-1].finish_reason == "tool_calls"
