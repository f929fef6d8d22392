"""``n > 1``: one client request run as n scheduler requests that share one prefill.

Transport-free. :func:`expand` turns a request into its n samples (rids ``<rid>#<i>``, seeds
``seed + i``); the manager sends them upstream in one message, so they reach one scheduler in the
same step, where the core defers all but one of requests sharing a long prefix
(``in_batch_prefix_threshold``) and the others then find the prompt in the radix cache.
:func:`interleave` merges the samples' chunk streams, tagging each chunk with its index.

NOTE: greedy sampling (temperature 0) gives n identical answers, as in vLLM and SGLang.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

from radixserve.common.errors import InvalidArgument
from radixserve.tokenizer.manager import Chunk
from radixserve.tokenizer.prompts import GenerateInput

MAX_N = 16
_SEED_MOD = 2**64


def check_n(n: int, field_name: str = "n") -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N:
        raise InvalidArgument(f"must be an integer in [1, {MAX_N}], got {n!r}", field_name)
    return n


def expand(req: GenerateInput, n: int) -> list[GenerateInput]:
    """The n samples of ``req``; ``req`` itself when n is 1."""
    if n == 1:
        return [req]
    out = []
    for i in range(n):
        sampling = req.sampling
        if sampling.seed is not None:
            sampling = replace(sampling, seed=(sampling.seed + i) % _SEED_MOD)
        out.append(replace(req, rid=f"{req.rid}#{i}", sampling=sampling))
    return out


async def _next(stream: AsyncIterator[Chunk]) -> Chunk:
    return await stream.__anext__()


async def interleave(streams: list[AsyncIterator[Chunk]]) -> AsyncIterator[Chunk]:
    """Chunks of every stream as they come, ``index`` set to the stream's position.

    NOTE: at most one read per stream is outstanding, so each sample still coalesces its own
    chunks while the consumer is slow. Closing this generator closes every stream (abort).
    """
    pending: dict[asyncio.Future[Chunk], int] = {
        asyncio.ensure_future(_next(s)): i for i, s in enumerate(streams)
    }
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: pending[t]):
                i = pending.pop(task)
                try:
                    chunk = task.result()
                except StopAsyncIteration:
                    continue
                chunk.index = i
                if chunk.finish_reason is None:
                    pending[asyncio.ensure_future(_next(streams[i]))] = i
                yield chunk
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]
