"""Issue 10, findings 2, 3 and 5: the scheduler dies under load and comes back.

Clients see errors (never a quiet ``abort`` or a 200), readiness follows the link within seconds,
requests refused while it is down never run later (no ghosts), the link reconnects by itself,
and the front door holds no request afterwards.
"""

from __future__ import annotations

import concurrent.futures
import time

import grpc
import openai
import pytest

from radixserve.v1 import common_pb2, tokenizer_pb2
from radixserve.v1 import tokenizer_pb2_grpc as tok_grpc
from tests.reliability.conftest import (
    SERVING,
    http_status,
    readiness,
    registered,
    scheduler_load,
    start_scheduler_again,
    stop_scheduler,
    wait_for,
)

LONG = {"max_tokens": 400, "extra_body": {"ignore_eos": True}, "temperature": 0}


def _client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.http_url}/v1", api_key="x", max_retries=0, timeout=60)


def _model(stack) -> str:
    return stack.handles[-1].frontend.model_name


def _http_stream(stack, started) -> str:
    try:
        stream = _client(stack).completions.create(
            model=_model(stack), prompt="Once upon a time", stream=True, **LONG
        )
        for event in stream:
            started.append(1)
            if event.choices and event.choices[0].finish_reason:
                return f"finished:{event.choices[0].finish_reason}"
        return "ended without finish_reason"
    except openai.APIError as exc:
        return f"error:{exc.message}"


def _http_plain(stack) -> str:
    try:
        resp = _client(stack).completions.create(
            model=_model(stack), prompt="Tell me a story", **LONG
        )
        return f"finished:{resp.choices[0].finish_reason}"
    except openai.APIStatusError as exc:
        return f"status:{exc.status_code}"


def _grpc_stream(stack, started) -> str:
    with grpc.insecure_channel(stack.tokenizer_address) as channel:
        stub = tok_grpc.TokenizerServiceStub(channel)
        sampling = common_pb2.SamplingParams(max_new_tokens=400, ignore_eos=True, temperature=0)
        last = None
        try:
            for resp in stub.Generate(
                tokenizer_pb2.GenerateRequest(text="The river", sampling=sampling), timeout=60
            ):
                started.append(1)
                last = resp
        except grpc.RpcError as exc:
            assert last is None or last.finish_reason != common_pb2.FINISH_REASON_ABORT
            return f"grpc:{exc.code().name}:{exc.details()}"
        return f"finished:{last.finish_reason}"


@pytest.mark.timeout(120)
def test_scheduler_killed_under_load_fails_loudly_and_recovers(stack):
    started: list[int] = []
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(_http_stream, stack, started) for _ in range(2)]
        futures += [pool.submit(_grpc_stream, stack, started) for _ in range(2)]
        futures += [pool.submit(_http_plain, stack) for _ in range(2)]
        assert wait_for(lambda: len(started) >= 4, timeout=30), "streams did not start"
        stop_scheduler(stack)
        outcomes = [f.result(timeout=30) for f in futures]
    down_at = time.monotonic()
    # Finding 2: every request cut by the fault ends in an error that says why.
    assert all(o.startswith("error:scheduler unavailable") for o in outcomes[:2]), outcomes
    assert all(o.startswith("grpc:UNAVAILABLE:scheduler unavailable") for o in outcomes[2:4])
    assert outcomes[4:] == ["status:503", "status:503"], outcomes
    # Readiness (gRPC and HTTP) follows the link within seconds.
    assert wait_for(lambda: readiness(stack.tokenizer_address) != SERVING, timeout=5)
    assert http_status(f"{stack.http_url}/health") == 503
    assert time.monotonic() - down_at < 5
    # Finding 5: requests refused while it is down fail fast and are not kept for later.
    for _ in range(3):
        t0 = time.monotonic()
        assert _http_plain(stack) == "status:503"
        assert time.monotonic() - t0 < 2
    assert _grpc_stream(stack, []).startswith("grpc:UNAVAILABLE")
    assert registered(stack) == 0
    # The link reconnects by itself when the scheduler returns; nothing else restarts.
    start_scheduler_again(stack)
    assert wait_for(lambda: readiness(stack.tokenizer_address) == SERVING, timeout=10)
    assert http_status(f"{stack.http_url}/health") == 200
    load = scheduler_load(stack.scheduler_address)
    assert load.running == 0 and load.waiting == 0  # no ghost request ran
    resp = _client(stack).completions.create(model=_model(stack), prompt="Hello", max_tokens=4)
    assert resp.choices[0].finish_reason == "length"
    assert wait_for(lambda: registered(stack) == 0, timeout=5)


def test_rejected_request_is_not_kept(stack):
    """Finding 3: a 400 raised after registration (out-of-range ints) leaks nothing."""
    before = registered(stack)
    for extra in ({"top_k": 2**31}, {"stop_token_ids": [2**31]}):
        with pytest.raises(openai.BadRequestError):
            _client(stack).completions.create(
                model=_model(stack), prompt="Hi", max_tokens=2, extra_body=extra
            )
    assert registered(stack) == before == 0
