"""Issue 23, items 1 and 2: one API key on both doors of the front door; internal ports closed
by default beyond loopback; a live step stream cannot be replaced; the scheduler bounds its queue.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from radixserve.common import security
from radixserve.common.security import SecurityConfig, Unprotected
from radixserve.common.server import ServiceServer
from radixserve.tokenizer.config import TokenizerConfig
from radixserve.v1 import (
    common_pb2,
    scheduler_pb2,
    scheduler_pb2_grpc,
    tokenizer_pb2,
    worker_pb2,
    worker_pb2_grpc,
)
from radixserve.v1 import tokenizer_pb2_grpc as tok_grpc
from tests.reliability.conftest import WORKER, scheduler_load, wait_for
from tests.stack import start_stack

KEY = "k3y-for-tests"


def _code(call, *args) -> grpc.StatusCode | None:
    try:
        call(*args)
    except grpc.RpcError as exc:
        return exc.code()
    return None


def _request(tokens: int = 3, rid: str = "") -> tokenizer_pb2.GenerateRequest:
    sampling = common_pb2.SamplingParams(max_new_tokens=tokens, ignore_eos=True, temperature=0)
    return tokenizer_pb2.GenerateRequest(rid=rid, text="Count:", sampling=sampling)


@pytest.fixture(scope="module")
def key_stack(runner, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("secret") / "api-key"
    key_file.write_text(KEY + "\n")  # as a mounted Secret: a file, not a flag seen in ps
    stack = start_stack(worker=WORKER, runner=runner, tokenizer={"api_key_file": str(key_file)})
    yield stack
    stack.stop()


def test_grpc_front_door_needs_the_api_key(key_stack):
    with grpc.insecure_channel(key_stack.tokenizer_address) as channel:
        stub = tok_grpc.TokenizerServiceStub(channel)
        calls = {
            "Generate": lambda md: list(stub.Generate(_request(), timeout=60, metadata=md)),
            "GetModelInfo": lambda md: stub.GetModelInfo(
                tokenizer_pb2.GetModelInfoRequest(), timeout=10, metadata=md
            ),
            "Tokenize": lambda md: stub.Tokenize(
                tokenizer_pb2.TokenizeRequest(text="hi"), timeout=10, metadata=md
            ),
            "Abort": lambda md: stub.Abort(
                tokenizer_pb2.AbortRequest(rid="x"), timeout=10, metadata=md
            ),
        }
        for name, call in calls.items():
            for md in ((), (("authorization", "Bearer wrong"),), (("authorization", KEY),)):
                assert _code(call, md) == grpc.StatusCode.UNAUTHENTICATED, (name, md)
            # The scheme matches in any case, as on HTTP.
            for scheme in ("Bearer", "bearer", "BEARER"):
                assert _code(call, (("authorization", f"{scheme} {KEY}"),)) is None, name
        health = health_pb2_grpc.HealthStub(channel)  # probes carry no credentials
        req = health_pb2.HealthCheckRequest(service="readiness")
        assert health.Check(req, timeout=5).status == health_pb2.HealthCheckResponse.SERVING


def test_http_bearer_scheme_is_case_insensitive(key_stack):
    url = f"{key_stack.http_url}/v1/models"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers={"authorization": "bearer nope"}, timeout=10).status_code == 401
    for scheme in ("Bearer", "bearer"):
        headers = {"authorization": f"{scheme} {KEY}"}
        assert httpx.get(url, headers=headers, timeout=10).status_code == 200


def test_api_key_from_a_file_or_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "key"
    path.write_text(f"{KEY}\n")
    assert TokenizerConfig(api_key_file=str(path)).with_api_key().api_key == KEY
    (tmp_path / "empty").write_text("")
    for bad in (str(tmp_path / "empty"), str(tmp_path / "missing")):
        with pytest.raises(ValueError, match="api_key_file"):
            TokenizerConfig(api_key_file=bad).with_api_key()
    from radixserve.common.config import parse_config

    monkeypatch.setenv("RADIXSERVE_API_KEY", KEY)  # the variable form (not seen in ps)
    assert parse_config(TokenizerConfig, []).api_key == KEY


def test_internal_port_beyond_loopback_refuses_to_start_open():
    async def build(address: str, public: bool = False) -> None:
        server = ServiceServer("worker", address, [], public=public)
        await server.server.stop(None)

    with pytest.raises(Unprotected, match="allow-unauthenticated"):
        asyncio.run(build("0.0.0.0:0"))
    with pytest.raises(Unprotected):
        asyncio.run(build("[::]:0"))
    asyncio.run(build("127.0.0.1:0"))  # loopback: open is fine (tests, one-host runs)
    asyncio.run(build("localhost:0"))
    asyncio.run(build("0.0.0.0:0", public=True))  # the front door is public by design
    for cfg in (SecurityConfig(auth_token="t"), SecurityConfig(allow_unauthenticated=True)):
        security.configure(cfg)
        try:
            asyncio.run(build("0.0.0.0:0"))
        finally:
            security.configure(SecurityConfig())


def test_the_scheduler_command_refuses_an_open_public_port():
    cmd = [sys.executable, "-m", "radixserve.scheduler", "--host=0.0.0.0", "--port=0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADIXSERVE_")}
    out = subprocess.run(
        [*cmd, "--metrics-port=0"], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 1
    assert "refusing to serve 0.0.0.0:0" in out.stderr and "--auth-token-file" in out.stderr
    assert "Traceback" not in out.stderr


def test_rogue_forward_cannot_replace_the_schedulers_stream(key_stack):
    auth = (("authorization", f"Bearer {KEY}"),)
    with grpc.insecure_channel(key_stack.tokenizer_address) as channel:
        stub = tok_grpc.TokenizerServiceStub(channel)
        call = stub.Generate(_request(tokens=40), timeout=120, metadata=auth)
        first = next(call)
        with grpc.insecure_channel(key_stack.worker_address) as rogue_channel:
            rogue = worker_pb2_grpc.WorkerServiceStub(rogue_channel)
            empty = rogue.Forward(iter([worker_pb2.ForwardRequest()]), timeout=30)
            assert _code(lambda: list(empty)) == grpc.StatusCode.FAILED_PRECONDITION
        responses = [first, *call]
    assert responses[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert sum(len(r.token_ids) for r in responses) == 40


def test_a_rogue_connect_cannot_reach_the_front_doors_requests(key_stack):
    """Each Connect stream is its own namespace: another stream naming a live rid (it knows it)
    neither aborts it nor gets its outputs."""
    auth = (("authorization", f"Bearer {KEY}"),)
    manager = key_stack.handles[-1].frontend.manager
    with grpc.insecure_channel(key_stack.tokenizer_address) as channel:
        stub = tok_grpc.TokenizerServiceStub(channel)
        call = stub.Generate(_request(tokens=40), timeout=120, metadata=auth)
        first = next(call)
        rid = next(iter(manager.states))
        with grpc.insecure_channel(key_stack.scheduler_address) as rogue_channel:
            rogue = scheduler_pb2_grpc.SchedulerServiceStub(rogue_channel)
            msgs = [
                scheduler_pb2.ConnectRequest(hello=scheduler_pb2.Hello(client_name="rogue")),
                scheduler_pb2.ConnectRequest(abort=scheduler_pb2.AbortRequests(rids=[rid])),
            ]
            stream = rogue.Connect(iter(msgs), timeout=3)
            assert _code(lambda: list(stream)) in (None, grpc.StatusCode.DEADLINE_EXCEEDED)
        responses = [first, *call]
    assert responses[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert sum(len(r.token_ids) for r in responses) == 40


def test_scheduler_bounds_its_own_queue(runner):
    stack = start_stack(
        worker=WORKER,
        runner=runner,
        scheduler={"max_running_requests": 1, "max_waiting_requests": 1},
    )
    try:
        with grpc.insecure_channel(stack.tokenizer_address) as channel:
            stub = tok_grpc.TokenizerServiceStub(channel)
            running = stub.Generate(_request(tokens=60), timeout=120)
            next(running)
            waiting = stub.Generate(_request(tokens=2), timeout=120)
            assert wait_for(lambda: scheduler_load(stack.scheduler_address).waiting == 1)
            third = stub.Generate(_request(tokens=2), timeout=120)
            with pytest.raises(grpc.RpcError) as err:
                list(third)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "scheduler overloaded" in (err.value.details() or "")
            assert "max_waiting_requests=1" in (err.value.details() or "")
            body = {"model": stack.handles[-1].frontend.model_name, "prompt": "Hi", "max_tokens": 2}
            resp = httpx.post(f"{stack.http_url}/v1/completions", json=body, timeout=60)
            assert resp.status_code == 429, resp.text  # HTTP: the same refusal
            assert list(waiting)[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH
            assert list(running)[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH
    finally:
        stack.stop()
