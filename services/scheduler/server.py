"""SchedulerService servicer: tokenizer streams in, engine loop out; pb <-> domain only."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from radixserve.v1 import scheduler_pb2, scheduler_pb2_grpc
from services.common import pbconv
from services.common.metrics import serve_metrics
from services.common.server import ServiceServer
from services.common.types import ModelInfo
from services.scheduler.clients import WorkerClient
from services.scheduler.config import SchedulerConfig
from services.scheduler.core_config import SchedulerCoreConfig
from services.scheduler.engine_loop import ClientStream, EngineLoop
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.profiling import EngineProfileRPCs
from services.scheduler.scheduler import Scheduler

logger = logging.getLogger(__name__)
SERVICE = scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name


class SchedulerServicer(EngineProfileRPCs, scheduler_pb2_grpc.SchedulerServiceServicer):
    """Serves once :meth:`attach` gave it the engine loop; UNAVAILABLE before."""

    def __init__(self) -> None:
        self.loop: EngineLoop | None = None
        self.info: object | None = None

    def attach(self, loop: EngineLoop, info: object) -> None:
        self.loop, self.info = loop, info

    async def _require_loop(self, context: grpc.aio.ServicerContext) -> EngineLoop:
        if self.loop is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scheduler is waiting for its worker")
        return self.loop

    async def Connect(
        self,
        request_iterator: AsyncIterator[scheduler_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[scheduler_pb2.ConnectResponse]:
        loop = await self._require_loop(context)
        client = loop.register()
        reader = asyncio.create_task(self._read(loop, client, request_iterator))
        get: asyncio.Task | None = None
        try:
            while True:
                get = asyncio.create_task(client.outbox.get())
                done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    break  # the tokenizer closed its side
                yield get.result()
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
                loop.add_requests(client, list(msg.add.requests))
            elif kind == "abort":
                loop.abort(client, list(msg.abort.rids))

    async def GetLoad(
        self, request: scheduler_pb2.GetLoadRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.GetLoadResponse:
        s = (await self._require_loop(context)).core.stats()
        return scheduler_pb2.GetLoadResponse(
            running=s.running,
            waiting=s.waiting,
            kv_usage=s.kv_usage,
            cache_hit_rate=s.cache_hit_rate,
        )

    async def GetEngineInfo(
        self, request: scheduler_pb2.GetEngineInfoRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.GetEngineInfoResponse:
        await self._require_loop(context)
        return scheduler_pb2.GetEngineInfoResponse(info=pbconv.model_info_to_pb(self.info))

    async def FlushCache(
        self, request: scheduler_pb2.FlushCacheRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.FlushCacheResponse:
        ok, freed = (await self._require_loop(context)).core.flush_cache()
        return scheduler_pb2.FlushCacheResponse(success=ok, freed_slots=freed)


def build_core(cfg: SchedulerConfig, info: ModelInfo) -> Scheduler:
    core_cfg = SchedulerCoreConfig(
        max_running_requests=cfg.max_running_requests or info.max_rows,
        max_prefill_tokens=cfg.max_prefill_tokens,
        chunked_prefill_size=cfg.chunked_prefill_size,
        schedule_policy=cfg.schedule_policy,
        eviction_policy=cfg.eviction_policy,
        page_size=cfg.page_size or None,
        enable_cache=not cfg.disable_radix_cache,
        enable_mixed_chunk=cfg.enable_mixed_chunk,
        init_new_token_ratio=cfg.init_new_token_ratio,
        min_new_token_ratio=cfg.min_new_token_ratio,
        new_token_ratio_decay_steps=cfg.new_token_ratio_decay_steps,
    )
    return Scheduler(core_cfg, info)


class RunningScheduler:
    """A started scheduler: its gRPC server and its step loop task."""

    def __init__(self, server: ServiceServer, task: asyncio.Task, worker: WorkerClient) -> None:
        self.server = server
        self.task = task
        self.worker = worker

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.server.stop()
        await self.worker.close()


async def start_scheduler(cfg: SchedulerConfig) -> RunningScheduler:
    """Opens the port, waits for the worker, sizes the core from it, starts the step loop."""
    metrics = SchedulerMetrics()
    serve_metrics(metrics.registry, cfg.metrics_port)
    server = ServiceServer("scheduler", f"{cfg.host}:{cfg.port}", [SERVICE], metrics.registry)
    worker = WorkerClient(cfg.worker_address)
    servicer = SchedulerServicer()
    await server.start(
        lambda s: scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(servicer, s)
    )
    await worker.wait_ready(cfg.worker_wait_seconds)
    info = await worker.get_info()
    metrics.model_name = info.model_name
    loop = EngineLoop(build_core(cfg, info), worker, metrics)
    servicer.attach(loop, info)
    task = asyncio.create_task(loop.run(), name="engine-loop")
    await server.set_ready(True)
    logger.info("scheduler ready", extra={"kv": {"slots": info.num_slots, "rows": info.max_rows}})
    return RunningScheduler(server, task, worker)
