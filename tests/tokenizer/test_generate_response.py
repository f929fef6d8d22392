"""The gRPC front door's per-chunk GenerateResponse: the per-token fast path and the general build
give the message the contract describes."""

from __future__ import annotations

import pytest

from radixserve.common.types import TopLogprobs
from radixserve.tokenizer.manager import Chunk
from radixserve.tokenizer.server import _response
from radixserve.v1 import common_pb2, tokenizer_pb2


def _expected(rid: str, chunk: Chunk, reason: int = 0) -> tokenizer_pb2.GenerateResponse:
    resp = tokenizer_pb2.GenerateResponse(rid=rid, index=chunk.index, finish_reason=reason)
    resp.text = chunk.text
    resp.token_ids.extend(chunk.token_ids)
    resp.logprobs.extend(chunk.logprobs)
    resp.error = chunk.error
    resp.usage.CopyFrom(
        common_pb2.Usage(
            prompt_tokens=chunk.prompt_tokens,
            completion_tokens=chunk.completion_tokens,
            cached_tokens=chunk.cached_tokens,
        )
    )
    for t in chunk.top_logprobs:
        resp.top_logprobs.add(token_ids=t.token_ids, logprobs=t.logprobs)
    return resp


@pytest.mark.parametrize(
    ("chunk", "reason"),
    [
        (Chunk(text="héllo", token_ids=[5, 6], prompt_tokens=9, completion_tokens=2), 0),
        (Chunk(text="", token_ids=[7], prompt_tokens=9, completion_tokens=3, cached_tokens=4), 0),
        (Chunk(text="x", token_ids=[8], index=2, completion_tokens=1), 0),
        (Chunk(text="x", token_ids=[8], logprobs=[-0.5], completion_tokens=1), 0),
        (
            Chunk(
                text="y",
                token_ids=[9],
                logprobs=[-0.1],
                top_logprobs=[TopLogprobs((9, 3), (-0.1, -2.0))],
                completion_tokens=1,
            ),
            0,
        ),  # fmt: skip
        (Chunk(text="z", token_ids=[1], finish_reason="length", completion_tokens=4), 2),
        (Chunk(finish_reason="error", error="worker unavailable: gone"), 4),
    ],
)
def test_generate_response_carries_every_field(chunk, reason):
    got = _response("rid-7", chunk)
    want = _expected("rid-7", chunk, reason)
    assert got == want
    assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)
