"""Fault injection on a real loopback stack (worker + scheduler + tokenizer, embedded SmolLM2).

Each module gets its own stack, because these tests break it on purpose. Helpers restart a
service in place (same port, same config) and read what clients and probes see.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from radixserve.scheduler.config import SchedulerConfig
from radixserve.scheduler.server import start_scheduler
from radixserve.v1 import scheduler_pb2, scheduler_pb2_grpc
from radixserve.worker.config import WorkerConfig
from radixserve.worker.server import build_runner
from tests.stack import Stack, start_stack

SERVING = health_pb2.HealthCheckResponse.SERVING


WORKER = {"num_slots": 2048, "max_rows": 16}


@pytest.fixture(scope="session")
def runner() -> object:
    """One loaded model for every stack of the suite (stacks run one at a time)."""
    return build_runner(WorkerConfig(**WORKER))


@pytest.fixture(scope="module")
def stack(runner) -> Iterator[Stack]:
    running = start_stack(worker=WORKER, runner=runner)
    yield running
    running.stop()


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every)
    return cond()


def readiness(address: str) -> int:
    """The health status of ``readiness`` at ``address`` (NOT_SERVING when unreachable)."""
    with grpc.insecure_channel(address) as channel:
        try:
            return (
                health_pb2_grpc.HealthStub(channel)
                .Check(health_pb2.HealthCheckRequest(service="readiness"), timeout=2)
                .status
            )
        except grpc.RpcError:
            return health_pb2.HealthCheckResponse.NOT_SERVING


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def scheduler_load(address: str) -> scheduler_pb2.GetLoadResponse:
    with grpc.insecure_channel(address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        return stub.GetLoad(scheduler_pb2.GetLoadRequest(), timeout=5)


def registered(stack: Stack) -> int:
    """The front door's debug view: requests its manager holds (scraped from /metrics)."""
    port = stack.metrics_ports["tokenizer"]
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    name = "radixserve_frontend_registered_requests"
    line = next(ln for ln in body.splitlines() if ln.startswith((f"{name} ", f"{name}{{")))
    return int(float(line.split()[-1]))


def stop_scheduler(stack: Stack) -> None:
    stack.call(stack.handles[1].stop(), timeout=30)


def start_scheduler_again(stack: Stack) -> None:
    host, port = stack.scheduler_address.rsplit(":", 1)
    cfg = SchedulerConfig(
        host=host,
        port=int(port),
        metrics_port=0,
        worker_address=stack.worker_address,
        worker_wait_seconds=60,
    )
    stack.handles[1] = stack.call(start_scheduler(cfg), timeout=60)
