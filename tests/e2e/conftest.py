"""One in-process stack (worker + scheduler + tokenizer with the embedded SmolLM2) per session."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc
import openai
import pytest

from radixserve.v1 import scheduler_pb2, scheduler_pb2_grpc
from tests.stack import Stack, start_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    running = start_stack(worker={"num_slots": 4096, "max_rows": 16})
    yield running
    running.stop()


@pytest.fixture(scope="session")
def oai(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.http_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="session")
def model_name(oai: openai.OpenAI) -> str:
    return oai.models.list().data[0].id


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.fixture(scope="session")
def idle(stack: Stack) -> Callable[[], bool]:
    """True once no request runs, neither in the tokenizer's manager nor in the scheduler."""
    manager = stack.handles[-1].frontend.manager
    channel = grpc.insecure_channel(stack.scheduler_address)
    stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)

    def check() -> bool:
        if manager.num_running:
            return False
        load = stub.GetLoad(scheduler_pb2.GetLoadRequest(), timeout=5)
        return load.running == 0 and load.waiting == 0

    return check
