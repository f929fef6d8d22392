"""Issue 10, finding 7: SIGTERM drains the front door instead of cutting streams.

A real ``python -m radixserve.tokenizer`` process in front of the in-process scheduler
gets SIGTERM with streams in flight: readiness turns NOT_SERVING, new requests are refused (503 /
UNAVAILABLE), the in-flight streams finish whole, then it exits 0. When the grace period is too
short, a stream still running ends with an SSE error event, never silently.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading

import grpc
import openai
import pytest

from radixserve.v1 import common_pb2, tokenizer_pb2
from radixserve.v1 import tokenizer_pb2_grpc as tok_grpc
from tests.reliability.conftest import SERVING, http_status, readiness, wait_for
from tests.stack import free_port


def _stream(
    base_url: str, model: str, tokens: int, out: list[str], started: list[int] | None = None
) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=120)
    text = ""
    try:
        for event in client.completions.create(
            model=model, prompt="Tell", max_tokens=tokens, stream=True,
            extra_body={"ignore_eos": True}, temperature=0,
        ):  # fmt: skip
            if event.choices:
                text += event.choices[0].text
                if started is not None:
                    started.append(1)
                if event.choices[0].finish_reason:
                    out.append(f"finished:{event.choices[0].finish_reason}")
                    return
        out.append("ended without finish_reason")
    except openai.APIError as exc:
        out.append(f"error:{exc.message}")


@pytest.mark.slow  # a real tokenizer process starts (~10 s idle, more on a busy machine)
@pytest.mark.timeout(180)
def test_sigterm_drains_in_flight_streams_then_exits(stack):
    grpc_port, http_port = free_port(), free_port()
    env = {**os.environ, "RADIXSERVE_DRAIN_SECONDS": "60"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "radixserve.tokenizer", "--host", "127.0.0.1",
         "--port", str(grpc_port), "--http-port", str(http_port), "--metrics-port", "0",
         "--scheduler-address", stack.scheduler_address],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    address, base = f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}"
    try:
        assert wait_for(lambda: readiness(address) == SERVING, timeout=90, every=0.3)
        model = stack.handles[-1].frontend.model_name
        outcomes: list[str] = []
        threads = [
            threading.Thread(target=_stream, args=(f"{base}/v1", model, 40, outcomes))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        assert wait_for(lambda: stack_running(stack) >= 2, timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: readiness(address) != SERVING, timeout=5)
        assert http_status(f"{base}/health") == 503
        refused = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as exc:
            refused.completions.create(model=model, prompt="late", max_tokens=2)
        assert exc.value.status_code == 503
        with grpc.insecure_channel(address) as channel:
            stub = tok_grpc.TokenizerServiceStub(channel)
            req = tokenizer_pb2.GenerateRequest(
                text="late", sampling=common_pb2.SamplingParams(max_new_tokens=2)
            )
            with pytest.raises(grpc.RpcError) as rpc:
                list(stub.Generate(req, timeout=10))
            assert rpc.value.code() == grpc.StatusCode.UNAVAILABLE
        for t in threads:
            t.join(120)
        assert outcomes == ["finished:length", "finished:length"]
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stack_running(stack) -> int:
    from tests.reliability.conftest import scheduler_load

    load = scheduler_load(stack.scheduler_address)
    return load.running + load.waiting


@pytest.mark.timeout(120)
def test_drain_period_over_ends_streams_with_an_error_event(stack):
    running = stack.handles[-1]
    model = running.frontend.model_name
    outcomes: list[str] = []
    started: list[int] = []
    args = (f"{stack.http_url}/v1", model, 400, outcomes, started)
    thread = threading.Thread(target=_stream, args=args)
    thread.start()
    try:
        assert wait_for(lambda: len(started) >= 2, timeout=30)
        cut = stack.call(running.drain(0.5), timeout=30)
        thread.join(30)
        assert cut == 1
        assert len(outcomes) == 1 and outcomes[0].startswith("error:the server shut down")
        assert running.frontend.manager.num_running == 0
    finally:
        running.frontend.manager.draining = False
        stack.call(_ready_again(running))


async def _ready_again(running) -> None:
    await running.server.set_ready(running.frontend.ready)
    await asyncio.sleep(0)
