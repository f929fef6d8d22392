"""SchedulerService servicer: tokenizer streams in, engine loop out (the conversions are
common/wire/scheduler.py's)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from radixserve.common.aio import wait_while
from radixserve.common.metrics import serve_metrics
from radixserve.common.server import ServiceServer
from radixserve.common.types import MAX_RID_BYTES, ModelInfo
from radixserve.common.wire import scheduler as wire
from radixserve.common.wire.common import model_info_to_pb
from radixserve.scheduler.clients import WorkerClient
from radixserve.scheduler.config import SchedulerConfig
from radixserve.scheduler.engine_io import ClientStream, LoopConfig
from radixserve.scheduler.engine_loop import EngineLoop
from radixserve.scheduler.metrics import SchedulerMetrics
from radixserve.scheduler.profiling import EngineProfileRPCs
from radixserve.scheduler.request import Request
from radixserve.scheduler.scheduler import Scheduler
from radixserve.v1 import scheduler_pb2, scheduler_pb2_grpc

logger = logging.getLogger(__name__)
SERVICE = scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name


class SchedulerServicer(EngineProfileRPCs, scheduler_pb2_grpc.SchedulerServiceServicer):
    """Serves once :meth:`attach` gave it the engine loop; UNAVAILABLE before."""

    def __init__(self) -> None:
        self.loop: EngineLoop | None = None

    def attach(self, loop: EngineLoop) -> None:
        self.loop = loop

    async def _require_loop(self, context: grpc.aio.ServicerContext) -> EngineLoop:
        if self.loop is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scheduler is waiting for its worker")
        assert self.loop is not None  # NOTE: context.abort raises
        return self.loop

    async def Connect(
        self,
        request_iterator: AsyncIterator[scheduler_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[scheduler_pb2.ConnectResponse]:
        loop = await self._require_loop(context)
        if loop.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scheduler is shutting down")
        client = loop.register()
        reader = asyncio.create_task(self._read(loop, client, request_iterator))
        get: asyncio.Task | None = None
        try:
            while True:
                get = asyncio.create_task(client.outbox.get())
                done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    break  # the tokenizer closed its side
                outputs = get.result()
                if outputs is None:
                    break  # the scheduler shuts down (after a drain)
                yield wire.outputs_to_pb(outputs)
        finally:
            if get is not None:
                get.cancel()
            reader.cancel()
            loop.unregister(client)
            logger.info("tokenizer stream closed", extra={"kv": {"client": client.name}})

    @staticmethod
    async def _read(
        loop: EngineLoop,
        client: ClientStream,
        request_iterator: AsyncIterator[scheduler_pb2.ConnectRequest],
    ) -> None:
        async for msg in request_iterator:
            kind = msg.WhichOneof("kind")
            if kind == "hello":
                client.name = msg.hello.client_name
                logger.info("tokenizer stream opened", extra={"kv": {"client": client.name}})
            elif kind == "add":
                reqs = []
                for pb in msg.add.requests:
                    if len(pb.rid.encode()) > MAX_RID_BYTES:
                        # NOTE: not echoed back (it is the oversized part): the front door's
                        # rids are 32 characters, so only a rogue client sends these.
                        loop.refuse(client, pb.rid[:MAX_RID_BYTES], "rid: too long", 0)
                        continue
                    try:
                        reqs.append(wire.request_from_pb(pb, Request))
                    except ValueError as exc:
                        loop.refuse(client, pb.rid, str(exc), len(pb.input_ids))
                loop.add_requests(client, reqs)
            elif kind == "abort":
                loop.abort(client, list(msg.abort.rids))

    async def GetLoad(
        self, request: scheduler_pb2.GetLoadRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.GetLoadResponse:
        s = (await self._require_loop(context)).stats()
        return scheduler_pb2.GetLoadResponse(
            running=s.running,
            waiting=s.waiting,
            kv_usage=s.kv_usage,
            cache_hit_rate=s.cache_hit_rate,
        )

    async def GetEngineInfo(
        self, request: scheduler_pb2.GetEngineInfoRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.GetEngineInfoResponse:
        info = (await self._require_loop(context)).info
        if info is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scheduler is waiting for its worker")
        assert info is not None  # NOTE: context.abort raises
        return scheduler_pb2.GetEngineInfoResponse(info=model_info_to_pb(info))

    async def FlushCache(
        self, request: scheduler_pb2.FlushCacheRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.FlushCacheResponse:
        core = (await self._require_loop(context)).core
        ok, freed = core.flush_cache() if core is not None else (False, 0)
        return scheduler_pb2.FlushCacheResponse(success=ok, freed_slots=freed)


def build_core(cfg: SchedulerConfig, info: ModelInfo) -> Scheduler:
    return Scheduler(cfg.core, info)


class RunningScheduler:
    """A started scheduler: its gRPC server and its step loop task.

    ``stop`` alone stops at once (running requests are cut, as in a crash); the process does
    ``drain`` first on SIGTERM.
    """

    def __init__(
        self,
        server: ServiceServer,
        task: asyncio.Task,
        worker: WorkerClient,
        loop: EngineLoop,
        drain_seconds: float = 30.0,
    ) -> None:
        self.server = server
        self.task = task
        self.worker = worker
        self.loop = loop
        self.drain_seconds = drain_seconds

    @property
    def port(self) -> int:
        return self.server.port

    async def drain(self, seconds: float | None = None) -> int:
        """Readiness NOT_SERVING, new requests (and streams) refused with UNAVAILABLE, running
        and queued requests stepped until they finish or ``seconds`` pass; then the rest end
        with FINISH_REASON_ERROR and a reason, and the tokenizer streams close. Returns how
        many requests were cut. The step loop is stopped afterwards."""
        seconds = self.drain_seconds if seconds is None else seconds
        loop = self.loop
        await loop.start_drain()
        stats = loop.stats()
        logger.info(
            "draining",
            extra={"kv": {"running": stats.running, "waiting": stats.waiting, "s": seconds}},
        )
        await wait_while(lambda: loop.has_work and not self.task.done(), seconds)
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        cut = loop.end_all(f"scheduler shut down (drain period of {seconds:g}s over)")
        await loop.close_clients(timeout=2.0)
        logger.info("drained", extra={"kv": {"cut": cut}})
        return cut

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.server.stop()
        await self.worker.close()


async def start_scheduler(cfg: SchedulerConfig) -> RunningScheduler:
    """Opens the port, waits for the worker, sizes the core from it, starts the step loop.

    The loop then supervises the worker link: readiness follows the worker (see engine_loop.py).
    """
    metrics = SchedulerMetrics()
    serve_metrics(metrics.registry, cfg.metrics_port)
    server = ServiceServer("scheduler", f"{cfg.host}:{cfg.port}", [SERVICE], metrics.registry)
    worker = WorkerClient(cfg.worker_address)
    servicer = SchedulerServicer()
    await server.start(
        lambda s: scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(servicer, s)
    )
    loop_cfg = LoopConfig(
        step_timeout=cfg.step_timeout_seconds,
        reconnect_max=cfg.reconnect_max_seconds,
        max_waiting=cfg.max_waiting_requests,
        probe_timeout=cfg.worker_probe_timeout_seconds,
    )
    loop = EngineLoop(
        worker, lambda info: build_core(cfg, info), metrics, loop_cfg, on_ready=server.set_ready
    )
    info = await loop.connect(cfg.worker_wait_seconds)
    metrics.model_name = info.model_name
    servicer.attach(loop)
    task = asyncio.create_task(loop.run(), name="engine-loop")
    logger.info("scheduler ready", extra={"kv": {"slots": info.num_slots, "rows": info.max_rows}})
    return RunningScheduler(server, task, worker, loop, cfg.drain_seconds)
