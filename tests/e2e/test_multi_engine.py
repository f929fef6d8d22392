"""Two engines (worker + scheduler pairs) behind one tokenizer: spread, prefix affinity, aborts.

The tokenizer here also has ``stream_interval=4``, tested on a streamed request.
"""

from __future__ import annotations

import concurrent.futures
import uuid

import grpc
import pytest

from radixserve.common.wire.tokenizer import OWNER_HEADER, owner_ticket
from radixserve.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc, tokenizer_pb2
from radixserve.v1 import tokenizer_pb2_grpc as tok_grpc
from radixserve.worker.config import WorkerConfig
from radixserve.worker.server import build_runner
from tests.e2e.conftest import wait_for
from tests.stack import Stack, start_stack

INTERVAL = 4


@pytest.fixture(scope="module")
def pair() -> Stack:
    # NOTE: one ModelRunner serves one Forward stream at a time, so each engine has its own.
    runners = [build_runner(WorkerConfig(num_slots=1024, max_rows=8)) for _ in range(2)]
    stack = start_stack(
        engines=2,
        runners=runners,
        tokenizer={"stream_interval": INTERVAL, "load_poll_seconds": 0.2},
    )
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def stub(pair: Stack):
    with grpc.insecure_channel(pair.tokenizer_address) as channel:
        yield tok_grpc.TokenizerServiceStub(channel)


@pytest.fixture(scope="module")
def loads(pair: Stack):
    channels = [grpc.insecure_channel(a) for a in pair.scheduler_addresses]
    stubs = [scheduler_pb2_grpc.SchedulerServiceStub(c) for c in channels]
    yield lambda: [s.GetLoad(scheduler_pb2.GetLoadRequest(), timeout=5) for s in stubs]
    for channel in channels:
        channel.close()


def pool(pair: Stack):
    return pair.handles[-1].link


def request(text: str, max_new_tokens: int, rid: str = "") -> tokenizer_pb2.GenerateRequest:
    sampling = common_pb2.SamplingParams(
        max_new_tokens=max_new_tokens, ignore_eos=True, temperature=0
    )
    return tokenizer_pb2.GenerateRequest(rid=rid, text=text, sampling=sampling)


def test_concurrent_requests_are_spread(pair, stub, loads) -> None:
    assert len(pool(pair).links) == 2
    streams = [stub.Generate(request(f"Story {i}:", 48), timeout=60) for i in range(4)]
    firsts = [next(s) for s in streams]  # every request is running now
    owners = dict(pool(pair).owner)
    assert sorted(owners.values()) == [0, 0, 1, 1], owners
    running = [load.running for load in loads()]
    assert all(r >= 1 for r in running), running
    for first, stream in zip(firsts, streams, strict=True):
        chunks = [first, *stream]
        assert chunks[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH
        # stream_interval: every chunk but the last has at least INTERVAL new tokens
        assert all(len(c.token_ids) >= INTERVAL for c in chunks[:-1])
        assert sum(len(c.token_ids) for c in chunks) == 48


def test_a_repeated_long_prefix_sticks_to_one_engine(pair, stub) -> None:
    prefix = "Background notes: " + " ".join(uuid.uuid4().hex for _ in range(10))
    cached = []
    for i in range(4):
        *_, last = stub.Generate(request(f"{prefix}\nQuestion {i}: why?", 2), timeout=60)
        cached.append(last.usage.cached_tokens)
    prompt = last.usage.prompt_tokens
    assert cached[0] < prompt // 2
    # each later request found the shared prefix cached: it went to the same engine
    assert all(c >= prompt - 12 for c in cached[1:]), (cached, prompt)


def test_abort_reaches_the_engine_that_has_the_request(pair, stub, loads) -> None:
    assert wait_for(lambda: all(x.running == 0 for x in loads()))
    rid = f"abort-{uuid.uuid4().hex[:8]}"
    stream = stub.Generate(request("Count slowly:", 1000, rid), timeout=60)
    next(stream)
    # NOTE (issue 23): the request runs under a server rid; the client's rid names it for its
    # owner alone, who proves it with the ticket Generate sent (no API key here).
    ticket = owner_ticket(stream.initial_metadata())
    (index,) = pool(pair).owner.values()
    assert loads()[index].running == 1
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        rest = ex.submit(list, stream)
        md = ((OWNER_HEADER, ticket),)
        assert stub.Abort(tokenizer_pb2.AbortRequest(rid=rid), timeout=5, metadata=md).found
        tail = rest.result(timeout=30)
    assert tail[-1].finish_reason == common_pb2.FINISH_REASON_ABORT
    assert wait_for(lambda: loads()[index].running == 0 and loads()[index].waiting == 0, 5)
    assert not pool(pair).owner and pool(pair).router.in_flight == [0, 0]
