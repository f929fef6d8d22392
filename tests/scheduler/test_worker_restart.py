"""The scheduler survives its worker's restart (issue 10): real worker and scheduler servers on
loopback with the embedded model, talking to the scheduler's Connect stream directly."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from radixserve.scheduler.config import scheduler_config
from radixserve.scheduler.server import start_scheduler
from radixserve.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from radixserve.worker.config import WorkerConfig
from radixserve.worker.server import build_runner, start_worker
from tests.stack import free_port

pytestmark = pytest.mark.timeout(180)

ERROR = common_pb2.FINISH_REASON_ERROR
LENGTH = common_pb2.FINISH_REASON_LENGTH
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def runner():
    return build_runner(WorkerConfig(num_slots=1024, max_rows=8))


def add(*reqs: tuple[str, list[int], int]) -> scheduler_pb2.ConnectRequest:
    return scheduler_pb2.ConnectRequest(
        add=scheduler_pb2.AddRequests(
            requests=[
                scheduler_pb2.SchedRequest(
                    rid=rid,
                    input_ids=ids,
                    sampling=common_pb2.SamplingParams(
                        temperature=0, max_new_tokens=n, ignore_eos=True
                    ),
                )
                for rid, ids, n in reqs
            ]
        )
    )


class Session:
    """One Connect stream to the scheduler: send adds, gather outputs per rid."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.call = scheduler_pb2_grpc.SchedulerServiceStub(channel).Connect()
        self.tokens: dict[str, int] = {}
        self.final: dict[str, scheduler_pb2.RequestOutput] = {}

    async def until(self, cond, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while not cond():
                resp = await self.call.read()
                packed = resp.packed  # token-only news
                for rid, n in zip(packed.rids, packed.token_counts, strict=True):
                    self.tokens[rid] = self.tokens.get(rid, 0) + n
                for out in resp.outputs:
                    self.tokens[out.rid] = self.tokens.get(out.rid, 0) + len(out.token_ids)
                    if out.finish_reason:
                        self.final[out.rid] = out


async def serving(channel: grpc.aio.Channel) -> bool:
    """Whether health ``readiness`` and ``""`` both say SERVING (they must agree)."""
    stub = health_pb2_grpc.HealthStub(channel)
    for _ in range(20):
        states = [
            (await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=2)).status
            for name in ("readiness", "")
        ]
        if states[0] == states[1]:
            return states[0] == SERVING
        await asyncio.sleep(0.05)  # the two reads straddled a change: read both again
    raise AssertionError(f"readiness and the overall status disagree: {states}")


async def wait_readiness(channel: grpc.aio.Channel, want: bool, timeout: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(timeout):
        while await serving(channel) != want:
            await asyncio.sleep(0.05)
    return loop.time() - start


def test_worker_restart_fails_cut_requests_then_scheduler_reconnects(runner):
    async def main():
        wport = free_port()
        wcfg = WorkerConfig(host="127.0.0.1", port=wport, metrics_port=0)
        worker = await start_worker(wcfg, runner)
        scfg = scheduler_config(
            host="127.0.0.1",
            port=0,
            metrics_port=0,
            worker_address=f"127.0.0.1:{wport}",
            worker_wait_seconds=30,
            reconnect_max_seconds=0.5,
        )
        sched = await start_scheduler(scfg)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{sched.port}")
        try:
            await wait_readiness(channel, True, 10)
            s = Session(channel)
            await s.call.write(add(("a", [1, 2, 3], 400), ("b", [4, 5], 400)))
            await s.until(lambda: s.tokens.get("a", 0) >= 3)
            await worker.stop(0)  # the worker goes away mid-generation
            await s.until(lambda: {"a", "b"} <= set(s.final), timeout=30)
            for rid in ("a", "b"):
                assert s.final[rid].finish_reason == ERROR
                assert s.final[rid].error.startswith("worker unavailable: ")
            assert await wait_readiness(channel, False, 10) < 5
            await s.call.write(add(("down", [7], 4)))
            await s.until(lambda: "down" in s.final, timeout=10)
            assert s.final["down"].finish_reason == ERROR
            assert s.final["down"].error.startswith("worker unavailable")

            worker = await start_worker(wcfg, runner)  # a new worker on the same port
            assert await wait_readiness(channel, True, 30) < 15
            await s.call.write(add(("c", [1, 2, 3], 6)))
            await s.until(lambda: "c" in s.final, timeout=60)
            assert s.final["c"].finish_reason == LENGTH and s.tokens["c"] == 6
            load = await scheduler_pb2_grpc.SchedulerServiceStub(channel).GetLoad(
                scheduler_pb2.GetLoadRequest(), timeout=5
            )
            assert load.running == 0 and load.waiting == 0 and load.kv_usage == 0.0
            s.call.cancel()
        finally:
            await channel.close()
            await sched.stop()
            await worker.stop(0)

    asyncio.run(main())
