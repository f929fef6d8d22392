"""Issue 23, item 5: health tells the truth about hangs. A peer that does not answer within a
bound turns readiness NOT_SERVING (the tokenizer's view of its scheduler, the scheduler's of its
worker), and a request has a default time limit."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from radixserve.scheduler.engine_io import LoopConfig
from radixserve.scheduler.engine_loop import EngineLoop
from radixserve.scheduler.metrics import SchedulerMetrics
from radixserve.tokenizer import clients
from radixserve.tokenizer.clients import SchedulerLink
from radixserve.tokenizer.config import TokenizerConfig


class _Hung(health_pb2_grpc.HealthServicer):
    """A peer whose process is stopped: its port accepts, nothing answers."""

    def __init__(self) -> None:
        self.hung = True

    async def Check(self, request, context):  # noqa: N802 - the gRPC method name
        while self.hung:
            await asyncio.sleep(0.02)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def test_tokenizer_sees_a_hung_scheduler_as_not_ready(monkeypatch):
    monkeypatch.setattr(clients, "PROBE_TIMEOUT_S", 0.2)

    async def run() -> list[bool]:
        server = grpc.aio.server()
        peer = _Hung()
        health_pb2_grpc.add_HealthServicer_to_server(peer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        link = SchedulerLink(f"127.0.0.1:{port}", "t", probe_seconds=0.05)
        seen: list[bool] = []
        link.on_change = lambda: seen.append(link.ready)
        link._set(up=True, serving=True)  # an open stream to a scheduler that then stops
        probe = asyncio.create_task(link._probe())
        try:
            for _ in range(100):  # 2 misses of 0.2 s: well within 5 s
                await asyncio.sleep(0.05)
                if not link.ready:
                    break
            assert not link.ready and "no answer" in link.down_reason
            peer.hung = False  # it resumes (SIGCONT): ready again
            for _ in range(100):
                await asyncio.sleep(0.05)
                if link.ready:
                    break
        finally:
            probe.cancel()
            await link.channel.close()
            await server.stop(None)
        return seen

    assert asyncio.run(run()) == [True, False, True]


class _Worker:
    def __init__(self) -> None:
        self.hung = False

    async def answers(self, timeout: float) -> bool:
        if self.hung:
            await asyncio.sleep(timeout)
            return False
        return True


def test_scheduler_sees_a_hung_worker_as_not_ready():
    async def run() -> list[bool]:
        seen: list[bool] = []

        async def on_ready(ready: bool) -> None:
            seen.append(ready)

        worker = _Worker()
        cfg = LoopConfig(probe_every=0.02, probe_timeout=0.1)
        loop = EngineLoop(worker, None, SchedulerMetrics(), cfg, on_ready=on_ready)  # type: ignore[arg-type]
        await loop._set_ready(True)
        watch = asyncio.create_task(loop._watch_worker())
        await asyncio.sleep(0.2)
        assert seen == [True]  # answering: nothing changes
        worker.hung = True
        await asyncio.sleep(0.5)
        assert seen == [True, False] and "no answer" in loop.down_reason
        worker.hung = False
        await asyncio.sleep(0.3)
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        return seen

    assert asyncio.run(run()) == [True, False, True]


def test_requests_have_a_default_time_limit():
    assert TokenizerConfig().request_timeout_seconds == 600.0
