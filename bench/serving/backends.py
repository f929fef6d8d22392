"""One streamed request against an OpenAI-compatible endpoint or our gRPC front door.

Each backend records what a client sees: when each chunk carrying output arrived (TTFT is the
first, ITLs the gaps between the others) and the token counts the server reports.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from .datasets import BenchRequest

logger = logging.getLogger(__name__)


@dataclass
class RequestResult:
    """What one request measured; ``error`` set means it failed and counts only as a failure."""

    input_len: int = 0
    output_len: int = 0  # generated tokens, from the server's usage when it gives one
    ttft: float = 0.0  # seconds from sending to the first chunk with output
    e2e: float = 0.0  # seconds from sending to the end of the stream
    itl: list[float] = field(default_factory=list)  # gaps between output chunks
    error: str = ""

    @property
    def tpot(self) -> float | None:
        """Mean time per output token after the first; None for one-token outputs."""
        if self.output_len < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_len - 1)


class _Clock:
    """Chunk arrival times of one stream."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.last = 0.0
        self.result = RequestResult()

    def chunk(self) -> None:
        now = time.perf_counter()
        if not self.last:
            self.result.ttft = now - self.start
        else:
            self.result.itl.append(now - self.last)
        self.last = now

    def done(self) -> RequestResult:
        self.result.e2e = time.perf_counter() - self.start
        return self.result


def completion_payload(model: str, req: BenchRequest, extra: dict[str, Any]) -> dict[str, Any]:
    """A streamed greedy ``/v1/completions`` body generating exactly ``req.output_len`` tokens."""
    return {
        "model": model,
        "prompt": req.prompt_ids if req.prompt_text is None else req.prompt_text,
        "max_tokens": req.output_len,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
        **extra,
    }


async def openai_request(
    client: httpx.AsyncClient, url: str, payload: dict[str, Any], req: BenchRequest
) -> RequestResult:
    """Streams one completion from ``url`` (``.../v1/completions``)."""
    clock = _Clock()
    out = clock.result
    out.input_len = req.input_len
    chunks = 0
    try:
        async with client.stream("POST", url, json=payload) as resp:
            if resp.status_code != 200:
                body = (await resp.aread()).decode(errors="replace")
                out.error = f"HTTP {resp.status_code}: {body[:300]}"
                return clock.done()
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event and not event.get("choices"):
                    out.error = str(event["error"])
                    break
                if event.get("usage"):
                    out.output_len = event["usage"].get("completion_tokens", 0)
                    out.input_len = event["usage"].get("prompt_tokens", 0) or out.input_len
                choices = event.get("choices") or []
                if choices and choices[0].get("text"):
                    clock.chunk()
                    chunks += 1
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    result = clock.done()
    if not out.error and not out.output_len:
        # NOTE: a server without include_usage support: chunks are the best count left.
        result.output_len = chunks
    if not out.error and not chunks:
        out.error = "no output chunk"
    return result


async def grpc_request(stub: Any, req: BenchRequest) -> RequestResult:
    """Streams one ``TokenizerService.Generate`` (token ids in, token ids out)."""
    import grpc

    from radixserve.v1 import common_pb2, tokenizer_pb2

    msg = tokenizer_pb2.GenerateRequest(
        token_ids=tokenizer_pb2.TokenIdsInput(ids=req.prompt_ids),
        sampling=common_pb2.SamplingParams(
            temperature=0, max_new_tokens=req.output_len, ignore_eos=True
        ),
    )
    clock = _Clock()
    out = clock.result
    out.input_len = req.input_len
    tokens = 0
    try:
        async for resp in stub.Generate(msg, timeout=3600):
            if resp.token_ids:
                clock.chunk()
                tokens += len(resp.token_ids)
            if resp.HasField("usage") and resp.usage.completion_tokens:
                out.output_len = resp.usage.completion_tokens
    except grpc.RpcError as exc:
        out.error = f"gRPC {exc.code().name}: {exc.details()}"
    result = clock.done()
    result.output_len = result.output_len or tokens
    return result
