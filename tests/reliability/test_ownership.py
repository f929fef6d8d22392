"""Issue 23, item 7: a request belongs to its caller, not to a TCP connection.

Two channels of one process share a connection (the same peer), as the users behind one gateway
do. A client's rid names a request inside its caller's namespace: another caller neither learns
that it exists nor aborts it; the owner aborts it with the ticket Generate sent it (or its API
key); a rid is at most 256 bytes.
"""

from __future__ import annotations

import grpc
import pytest

from radixserve.tokenizer.server import OWNER_HEADER
from radixserve.v1 import common_pb2, tokenizer_pb2
from radixserve.v1 import tokenizer_pb2_grpc as tok_grpc
from tests.reliability.conftest import registered, wait_for


def _start(stub, rid: str = "", tokens: int = 40):
    sampling = common_pb2.SamplingParams(max_new_tokens=tokens, ignore_eos=True, temperature=0)
    req = tokenizer_pb2.GenerateRequest(rid=rid, text="Count:", sampling=sampling)
    call = stub.Generate(req, timeout=120)
    return call, next(call)


def _last(call, first):
    return [first, *call][-1]


@pytest.fixture()
def two_channels(stack):
    # NOTE: default options: the two channels share one subchannel, so one peer address.
    a, b = (
        grpc.insecure_channel(stack.tokenizer_address),
        grpc.insecure_channel(stack.tokenizer_address),
    )
    yield tok_grpc.TokenizerServiceStub(a), tok_grpc.TokenizerServiceStub(b)
    a.close()
    b.close()
    assert wait_for(lambda: registered(stack) == 0)


def test_another_channel_of_the_same_process_cannot_abort(two_channels):
    mine, theirs = two_channels
    call, first = _start(mine, rid="user-42")
    assert first.rid == "user-42"
    assert not theirs.Abort(tokenizer_pb2.AbortRequest(rid="user-42"), timeout=5).found
    assert not mine.Abort(tokenizer_pb2.AbortRequest(rid="user-42"), timeout=5).found  # no proof
    assert _last(call, first).finish_reason == common_pb2.FINISH_REASON_LENGTH


def test_the_owner_aborts_with_its_ticket(two_channels):
    mine, theirs = two_channels
    call, first = _start(mine, rid="user-43")
    ticket = dict(call.initial_metadata())[OWNER_HEADER]
    wrong = ((OWNER_HEADER, "0" * 32),)
    assert not theirs.Abort(
        tokenizer_pb2.AbortRequest(rid="user-43"), timeout=5, metadata=wrong
    ).found
    md = ((OWNER_HEADER, ticket),)
    assert mine.Abort(tokenizer_pb2.AbortRequest(rid="user-43"), timeout=5, metadata=md).found
    assert _last(call, first).finish_reason == common_pb2.FINISH_REASON_ABORT


def test_a_live_rid_of_another_caller_is_no_oracle(two_channels):
    mine, theirs = two_channels
    call, first = _start(mine, rid="user-44")
    # The other caller's request with the same rid runs as its own: nothing says "running".
    other, other_first = _start(theirs, rid="user-44", tokens=3)
    last = _last(other, other_first)
    assert other_first.rid == last.rid == "user-44"
    assert last.finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert _last(call, first).finish_reason == common_pb2.FINISH_REASON_LENGTH


def test_rid_length_is_bounded(two_channels):
    mine, _ = two_channels
    with pytest.raises(grpc.RpcError) as err:
        _start(mine, rid="r" * 257, tokens=1)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "256 bytes" in err.value.details()
    call, first = _start(mine, rid="r" * 256, tokens=1)
    assert _last(call, first).finish_reason == common_pb2.FINISH_REASON_LENGTH
