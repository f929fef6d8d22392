"""What both generating endpoints do with a request once parsed: check the model, build its
:class:`GenerateInput`, run it through the shared layer (:mod:`radixserve.tokenizer.serving`,
as the gRPC door does) and answer with a JSON body or an SSE stream.

NOTE: a client that goes away must abort its request. Every path closes the chunk stream: before
the stream starts a watcher on ``http.disconnect`` cancels the wait, and once streaming, Starlette
cancels the SSE generator on disconnect, whose ``finally`` closes the chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from radixserve.common.errors import NotFound
from radixserve.common.grammars import check_constraint
from radixserve.tokenizer.frontend import Frontend
from radixserve.tokenizer.manager import Chunk
from radixserve.tokenizer.openai import sampling, sse
from radixserve.tokenizer.openai.errors import engine_error
from radixserve.tokenizer.openai.protocol import SamplingRequest
from radixserve.tokenizer.openai.render import Format
from radixserve.tokenizer.openai.usage import new_totals
from radixserve.tokenizer.prompts import GenerateInput
from radixserve.tokenizer.serving import Serving
from radixserve.tokenizer.tool_calls import ToolParser

logger = logging.getLogger(__name__)
T = TypeVar("T")


class ClientGone(Exception):
    """The HTTP client disconnected before its answer was ready."""


def check_model(frontend: Frontend, model: str | None) -> None:
    if model is not None and model != frontend.model_name:
        raise NotFound(f"the model `{model}` does not exist", "model")


def body_size(request: Request) -> int:
    """The body's size: large prompts are tokenized off the event loop."""
    length = request.headers.get("content-length", "")
    return int(length) if length.isdigit() else 0


class OpenAIServing:
    """The part of an endpoint that does not depend on its shapes (see the module docstring)."""

    def __init__(self, frontend: Frontend, serving: Serving) -> None:
        self.fe = frontend
        self.serving = serving

    def build(self, ids: list[int], body: SamplingRequest, field_name: str) -> GenerateInput:
        info = self.fe.info
        params, given = sampling.sampling_params(body, info.max_context_len, info.vocab_size)
        if params.constraint is not None:
            check_constraint(params.constraint, sampling.constraint(body)[1] or "constraint")
        return self.fe.builder.build(
            ids,
            params,
            stop=sampling.stop_strings(body.stop),
            max_tokens_given=given,
            field_name=field_name,
            skip_special_tokens=body.skip_special_tokens,
            include_stop_str_in_output=body.include_stop_str_in_output,
        )

    async def respond(
        self, request: Request, reqs: list[GenerateInput], body: SamplingRequest, fmt: Format
    ) -> Response:
        """Runs ``reqs`` (one per prompt, ``body.n`` choices each) and answers in ``fmt``."""
        n = body.n * len(reqs)  # choices in all
        fmt.per_prompt = body.n
        prompt_len = sum(len(r.input_ids) for r in reqs)
        try:
            if not body.stream:
                totals = await until_disconnect(request, self._whole(reqs, body.n, n))
                failed = next((t for t in totals if t.finish_reason == "error"), None)
                if failed is not None:
                    return engine_error(failed)
                return JSONResponse(fmt.response(totals, prompt_len))
            start = self._start(reqs, body.n, fmt.tool_parser)
            chunks, first = await until_disconnect(request, start)
        except ClientGone:
            return Response(status_code=499)
        if first.finish_reason == "error":
            await chunks.aclose()  # type: ignore[attr-defined]
            return engine_error(first)
        stream = sse.events(first, chunks, fmt, prompt_len, body.include_usage, n)
        return sse.SSEResponse(stream)

    # NOTE: both start the run inside the task that reads it (until_disconnect's), so that a
    # cancelled wait closes a stream that started, and never leaves one registered unstarted.

    async def _whole(self, reqs: list[GenerateInput], n: int, choices: int) -> list[Chunk]:
        # A whole answer's tool calls are parsed from its text at the end (ChatFormat.full).
        return await collect(self.serving.generate(reqs, n), choices)

    async def _start(
        self, reqs: list[GenerateInput], n: int, tools: ToolParser | None
    ) -> tuple[AsyncIterator[Chunk], Chunk]:
        """The stream and its first chunk."""
        chunks = self.serving.generate(reqs, n, tools)
        try:
            return chunks, await chunks.__anext__()
        except BaseException:
            await chunks.aclose()  # type: ignore[attr-defined]
            raise


async def collect(chunks: AsyncIterator[Chunk], n: int = 1) -> list[Chunk]:
    """One merged chunk per choice, by index."""
    totals = new_totals(n)
    try:
        async for chunk in chunks:
            totals[chunk.index].merge(chunk)
    finally:
        # NOTE: a cancelled collect (the client went away) closes the stream now, which aborts
        # the request upstream; `async for` alone leaves that to the garbage collector.
        await chunks.aclose()  # type: ignore[attr-defined]
    for total in totals:
        if total.finish_reason is None:
            total.finish_reason = "abort"
    return totals


async def _wait_disconnect(request: Request) -> None:
    # NOTE: FastAPI has read the whole body, so receive() blocks until the client disconnects.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Awaits ``work``; cancels it and raises ClientGone if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        task.cancel()  # no-op when done
    if not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientGone
    return task.result()
