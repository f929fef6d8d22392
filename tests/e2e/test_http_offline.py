"""The HTTP API over a scripted manager (no engine): engine failures, SSE shapes, binding."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest
from fastapi.testclient import TestClient

from radixserve.common.types import ModelInfo
from radixserve.common.vocab.byte_level import ByteTokenizer
from radixserve.tokenizer.frontend import Frontend
from radixserve.tokenizer.manager import Chunk
from radixserve.tokenizer.metrics import TokenizerMetrics
from radixserve.tokenizer.openai.http_server import start_http
from radixserve.tokenizer.openai.routes import create_app
from radixserve.tokenizer.prompts import GenerateInput, PromptBuilder


class ScriptedManager:
    def __init__(self) -> None:
        self.script: list[Chunk] = []
        self.closed = 0
        self.num_running = 0
        self.draining = False

    async def generate(self, req: GenerateInput) -> AsyncIterator[Chunk]:
        try:
            for chunk in self.script:
                yield chunk
        finally:
            self.closed += 1


def make_frontend() -> Frontend:
    tok = ByteTokenizer(vocab_size=300)
    info = ModelInfo("fake", 300, 64, 128, 4)
    manager = ScriptedManager()
    return Frontend(tok, info, PromptBuilder(tok, info), manager, "fake")  # type: ignore[arg-type]


@pytest.fixture
def api() -> tuple[TestClient, ScriptedManager]:
    fe = make_frontend()
    return TestClient(create_app(fe, TokenizerMetrics())), fe.manager  # type: ignore[return-value]


def test_engine_error_is_503(api: tuple[TestClient, ScriptedManager]) -> None:
    client, manager = api
    manager.script = [Chunk(finish_reason="error", error="worker died")]
    for stream in (False, True):
        resp = client.post("/v1/completions", json={"prompt": "hi", "stream": stream})
        assert resp.status_code == 503
        assert resp.json()["error"]["message"] == "worker died"
    assert manager.closed == 2


def test_stream_shapes_and_mid_stream_error(api: tuple[TestClient, ScriptedManager]) -> None:
    client, manager = api
    manager.script = [
        Chunk(text="Hel", token_ids=[1], prompt_tokens=3, completion_tokens=1),
        Chunk(text="lo", token_ids=[2], finish_reason="length", completion_tokens=2),
    ]
    body = {"messages": [{"role": "user", "content": "x"}], "stream": True}
    body["stream_options"] = {"include_usage": True}
    lines = [ln for ln in client.post("/v1/chat/completions", json=body).text.split("\n") if ln]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [e["choices"][0]["delta"].get("content") for e in events[1:3]] == ["Hel", "lo"]
    assert events[2]["choices"][0]["finish_reason"] == "length"
    assert events[3]["usage"]["total_tokens"] == 5 and events[3]["choices"] == []
    manager.script = [Chunk(text="a", token_ids=[1]), Chunk(finish_reason="error", error="boom")]
    text = client.post("/v1/completions", json={"prompt": "x", "stream": True}).text
    assert '"error"' in text and "boom" in text and text.endswith("data: [DONE]\n\n")


def test_start_http_busy_port_raises() -> None:
    async def run() -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            with pytest.raises(OSError):
                await start_http(make_frontend(), TokenizerMetrics(), "127.0.0.1", port)
        server, task = await start_http(make_frontend(), TokenizerMetrics(), "127.0.0.1", 0)
        assert server.started
        server.should_exit = True
        await asyncio.wait_for(task, 10)

    asyncio.run(run())
