"""Issue 10, finding 4: request ids are unguessable and an abort reaches only the caller's own."""

from __future__ import annotations

import re
import threading

import grpc
import openai

from radixserve.v1 import common_pb2, tokenizer_pb2
from radixserve.v1 import tokenizer_pb2_grpc as tok_grpc
from tests.reliability.conftest import registered, wait_for


def _start(stub, rid: str = "", tokens: int = 60):
    sampling = common_pb2.SamplingParams(max_new_tokens=tokens, ignore_eos=True, temperature=0)
    call = stub.Generate(
        tokenizer_pb2.GenerateRequest(rid=rid, text="Count:", sampling=sampling), timeout=120
    )
    return call, next(call)


def _finish(call, first) -> int:
    """The finish reason of the stream whose first message was ``first``."""
    responses = [first, *call]
    return responses[-1].finish_reason


def test_rids_are_random(stack):
    with grpc.insecure_channel(stack.tokenizer_address) as channel:
        stub = tok_grpc.TokenizerServiceStub(channel)
        rids = []
        for _ in range(2):
            call, first = _start(stub, tokens=1)
            rids.append(first.rid)
            _finish(call, first)
    assert all(re.fullmatch(r"[0-9a-f]{32}", r) for r in rids), rids
    assert rids[0] != rids[1]
    assert int(rids[1], 16) - int(rids[0], 16) != 1


def test_abort_reaches_only_the_callers_own_requests(stack):
    owner = grpc.insecure_channel(stack.tokenizer_address)
    # NOTE: channels of one process share a connection unless told not to; another client is
    # another connection (as another process would be).
    other = grpc.insecure_channel(
        stack.tokenizer_address, options=[("grpc.use_local_subchannel_pool", 1)]
    )
    try:
        mine, their = tok_grpc.TokenizerServiceStub(owner), tok_grpc.TokenizerServiceStub(other)
        call, first = _start(mine, rid="victim-1")
        # Another connection naming the rid (it knows it) changes nothing: found=false, as for
        # a rid that does not exist.
        assert not their.Abort(tokenizer_pb2.AbortRequest(rid=first.rid), timeout=5).found
        assert not their.Abort(tokenizer_pb2.AbortRequest(rid="no-such"), timeout=5).found
        assert _finish(call, first) == common_pb2.FINISH_REASON_LENGTH
        # The owner's own abort works.
        call, first = _start(mine)
        assert mine.Abort(tokenizer_pb2.AbortRequest(rid=first.rid), timeout=5).found
        assert _finish(call, first) == common_pb2.FINISH_REASON_ABORT
    finally:
        owner.close()
        other.close()


def test_grpc_abort_cannot_reach_an_http_stream(stack):
    client = openai.OpenAI(base_url=f"{stack.http_url}/v1", api_key="x", max_retries=0)
    model = stack.handles[-1].frontend.model_name
    manager = stack.handles[-1].frontend.manager
    outcome: list[str] = []

    def stream() -> None:
        for event in client.completions.create(
            model=model, prompt="Go", max_tokens=40, stream=True, extra_body={"ignore_eos": True}
        ):
            if event.choices and event.choices[0].finish_reason:
                outcome.append(event.choices[0].finish_reason)

    thread = threading.Thread(target=stream)
    thread.start()
    assert wait_for(lambda: manager.num_running == 1, timeout=30)
    rid = next(iter(manager.states))
    with grpc.insecure_channel(
        stack.tokenizer_address, options=[("grpc.use_local_subchannel_pool", 1)]
    ) as channel:
        stub = tok_grpc.TokenizerServiceStub(channel)
        assert not stub.Abort(tokenizer_pb2.AbortRequest(rid=rid), timeout=5).found
    thread.join(60)
    assert outcome == ["length"]
    assert wait_for(lambda: registered(stack) == 0)
