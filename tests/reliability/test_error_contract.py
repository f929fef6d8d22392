"""The front door's half of the fault contract, against a scripted scheduler on loopback.

A scheduler that ends a request with FINISH_REASON_ERROR and an error message makes gRPC
Generate fail UNAVAILABLE with that message (the last GenerateResponse carries it in ``error``),
HTTP answer 503 when not streaming and send an SSE error event when streaming. The real
tokenizer service runs; only the scheduler is a small scripted gRPC server.
"""

from __future__ import annotations

import asyncio
import threading

import grpc
import openai
import pytest

from radixserve.common.server import ServiceServer
from radixserve.common.types import ModelInfo
from radixserve.common.wire import common as pbconv
from radixserve.tokenizer.config import TokenizerConfig
from radixserve.tokenizer.server import start_tokenizer
from radixserve.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc, tokenizer_pb2
from radixserve.v1 import tokenizer_pb2_grpc as tok_grpc
from tests.reliability.conftest import wait_for
from tests.stack import Stack, free_port

ERROR = "worker unavailable: scripted failure"
INFO = ModelInfo("scripted", 49152, 2048, 4096, 8, eos_token_ids=(0,))


class ScriptedScheduler(scheduler_pb2_grpc.SchedulerServiceServicer):
    """Each request gets two tokens, then FINISH_REASON_ERROR with ERROR."""

    async def GetEngineInfo(self, request, context):
        return scheduler_pb2.GetEngineInfoResponse(info=pbconv.model_info_to_pb(INFO))

    async def Connect(self, request_iterator, context):
        async for msg in request_iterator:
            if msg.WhichOneof("kind") != "add":
                continue
            for req in msg.add.requests:
                yield scheduler_pb2.ConnectResponse(
                    outputs=[scheduler_pb2.RequestOutput(rid=req.rid, token_ids=[28, 29])]
                )
                await asyncio.sleep(0.05)
                yield scheduler_pb2.ConnectResponse(
                    outputs=[
                        scheduler_pb2.RequestOutput(
                            rid=req.rid,
                            finish_reason=common_pb2.FINISH_REASON_ERROR,
                            error=ERROR,
                        )
                    ]
                )


@pytest.fixture(scope="module")
def door():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="door-loop", daemon=True)
    thread.start()
    stack = Stack(loop, thread)
    sched_port, grpc_port, http_port = free_port(), free_port(), free_port()

    async def start() -> None:
        server = ServiceServer(
            "scheduler", f"127.0.0.1:{sched_port}", ["radixserve.v1.SchedulerService"]
        )
        await server.start(
            lambda s: scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(
                ScriptedScheduler(), s
            )
        )
        await server.set_ready(True)
        stack.handles.append(server)
        cfg = TokenizerConfig(
            host="127.0.0.1", port=grpc_port, http_port=http_port, metrics_port=0,
            scheduler_address=f"127.0.0.1:{sched_port}", scheduler_wait_seconds=30,
        )  # fmt: skip
        stack.handles.append(await start_tokenizer(cfg))

    stack.call(start())
    stack.tokenizer_address = f"127.0.0.1:{grpc_port}"
    stack.http_url = f"http://127.0.0.1:{http_port}"
    yield stack
    stack.stop()


def test_grpc_generate_fails_unavailable_with_the_error(door):
    with grpc.insecure_channel(door.tokenizer_address) as channel:
        stub = tok_grpc.TokenizerServiceStub(channel)
        req = tokenizer_pb2.GenerateRequest(
            text="Hi", sampling=common_pb2.SamplingParams(max_new_tokens=8)
        )
        seen = []
        with pytest.raises(grpc.RpcError) as exc:
            for resp in stub.Generate(req, timeout=30):
                seen.append(resp)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE and exc.value.details() == ERROR
    assert seen[-1].finish_reason == common_pb2.FINISH_REASON_ERROR and seen[-1].error == ERROR


def test_http_is_503_or_an_sse_error_event(door):
    client = openai.OpenAI(base_url=f"{door.http_url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as exc:
        client.completions.create(model="scripted", prompt="Hi", max_tokens=8)
    assert exc.value.status_code == 503 and ERROR in exc.value.message
    events = []
    with pytest.raises(openai.APIError) as exc:
        for event in client.completions.create(
            model="scripted", prompt="Hi", max_tokens=8, stream=True
        ):
            events.append(event)
    assert ERROR in exc.value.message and events  # the tokens before the fault came first
    assert wait_for(lambda: door.handles[-1].frontend.manager.num_running == 0)
