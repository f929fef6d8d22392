"""WorkerService servicer: pb <-> domain conversion around the ModelRunner, nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import grpc

from radixserve.common.aio import wait_while
from radixserve.common.metrics import serve_metrics
from radixserve.common.server import ServiceServer
from radixserve.common.types import ModelInfo, StepInput, StepOutput
from radixserve.common.wire.common import model_info_to_pb
from radixserve.common.wire.worker import output_to_pb, step_from_pb
from radixserve.v1 import worker_pb2, worker_pb2_grpc
from radixserve.worker.config import WorkerConfig
from radixserve.worker.metrics import WorkerMetrics
from radixserve.worker.parallel import GroupError
from radixserve.worker.parallel.launch import TPHandle, TPLaunch, wants_tp
from radixserve.worker.profiling import ProfileLimits, ProfileRPCs

logger = logging.getLogger(__name__)
# How long a new Forward stream waits for the live one to end (a scheduler reopening after a
# rejected step closes its old stream first; the worker sees that within milliseconds).
TAKEOVER_WAIT_S = 3.0
SERVICE = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name


class StepRunner(Protocol):
    """What the servicer uses of its runner: a ModelRunner, or rank 0's LeaderRunner under TP
    (the metrics and the profiler read more of it, untyped)."""

    @property
    def info(self) -> ModelInfo: ...

    def reset(self) -> None: ...

    def step(self, batch: StepInput) -> StepOutput: ...


class WorkerServicer(ProfileRPCs, worker_pb2_grpc.WorkerServiceServicer):
    """Serves one ModelRunner. The runner is set once the model has loaded."""

    def __init__(self, metrics: WorkerMetrics, step_thread: bool = False) -> None:
        self.runner: StepRunner | None = None
        self.step_thread = step_thread
        self.metrics = metrics
        # NOTE: one thread: steps must run in order and never concurrently on the model.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="forward")
        self._session = 0
        self.draining = False  # SIGTERM: open streams are served, new ones refused
        self.open_streams = 0
        self.takeover_wait_seconds = TAKEOVER_WAIT_S

    def attach(self, runner: StepRunner) -> None:
        self.runner = runner
        self.metrics.attach(runner)

    async def GetWorkerInfo(
        self, request: worker_pb2.GetWorkerInfoRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.GetWorkerInfoResponse:
        if self.runner is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "model is still loading")
        assert self.runner is not None  # NOTE: context.abort raises
        return worker_pb2.GetWorkerInfoResponse(info=model_info_to_pb(self.runner.info))

    async def Forward(
        self,
        request_iterator: AsyncIterator[worker_pb2.ForwardRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[worker_pb2.ForwardResponse]:
        if self.runner is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "model is still loading")
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "worker is shutting down")
        # NOTE: one live session: a second stream (a rogue caller, or a scheduler that thinks
        # the first is dead) waits for the first to end, briefly, and is refused otherwise; it
        # never replaces or joins the live one (issue 23). No await between the check and the
        # count, so two waiters cannot both get in.
        if not await wait_while(lambda: self.open_streams, self.takeover_wait_seconds):
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "another scheduler holds this worker's step stream",
            )
        self.open_streams += 1  # NOTE: a drain waits for these to close
        try:
            async with contextlib.aclosing(self._forward(request_iterator, context)) as steps:
                async for resp in steps:
                    yield resp
        finally:
            self.open_streams -= 1

    async def _forward(
        self,
        request_iterator: AsyncIterator[worker_pb2.ForwardRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncGenerator[worker_pb2.ForwardResponse, None]:
        assert self.runner is not None  # NOTE: Forward refuses streams until the model loaded
        loop = asyncio.get_running_loop()
        # NOTE: a new stream is a new scheduler session: rows of an older one are forgotten
        # (Forward lets it in only once the older stream has ended).
        self._session += 1
        session = self._session
        await loop.run_in_executor(self.executor, self.runner.reset)
        logger.info("forward stream opened", extra={"kv": {"peer": context.peer()}})
        async for pb in request_iterator:
            if session != self._session:
                await context.abort(grpc.StatusCode.ABORTED, "a newer Forward stream replaced this")
            try:
                step = step_from_pb(pb)
                start = self.metrics.step_begin()
                if self.step_thread:
                    out = await loop.run_in_executor(self.executor, self.runner.step, step)
                else:
                    # NOTE: blocks the event loop for one step on purpose. A step on a second
                    # thread fights the gRPC threads for the GIL (5 ms switch interval): on an
                    # H100 that cost 16% of batch-1 speed and 7x the median TTFT at 64 streams.
                    out = self.runner.step(step)
            except (ValueError, GroupError) as exc:
                # A bad step fails that step only; the stream and the other rows go on. A broken
                # TP group fails every step until the process exits (and the stream with it).
                logger.warning("step rejected", extra={"kv": {"step": pb.step_id, "err": exc}})
                self.metrics.errors.inc()
                yield worker_pb2.ForwardResponse(step_id=pb.step_id, error=str(exc))
                continue
            self.metrics.step_end(step, start)
            yield output_to_pb(out)
        logger.info("forward stream closed", extra={"kv": {"peer": context.peer()}})


def build_runner(cfg: WorkerConfig) -> StepRunner:
    """Loads the model (slow; shows progress). torch is imported only here."""
    from radixserve.worker.engine import ModelRunner

    return ModelRunner(cfg.runner)


class RunningWorker:
    """A started worker: its gRPC server and servicer.

    ``stop`` alone stops at once (a crash, as tests use it); on SIGTERM the process runs
    ``drain`` first.
    """

    def __init__(
        self, server: ServiceServer, servicer: WorkerServicer, drain_seconds: float
    ) -> None:
        self.server, self.servicer, self.drain_seconds = server, servicer, drain_seconds

    def __getattr__(self, name: str) -> object:
        return getattr(self.server, name)  # port, set_ready, ...

    async def drain(self, seconds: float | None = None) -> bool:
        """Readiness NOT_SERVING and new Forward streams refused; steps on the open stream go
        on until the scheduler closes it (it drains too) or ``seconds`` pass. Returns whether
        the streams ended by themselves."""
        seconds = self.drain_seconds if seconds is None else seconds
        self.servicer.draining = True
        await self.server.set_ready(False)
        logger.info("draining", extra={"kv": {"streams": self.servicer.open_streams, "s": seconds}})
        if not await wait_while(lambda: self.servicer.open_streams, seconds):
            logger.warning("drain period over with a scheduler stream open")
            return False
        return True

    async def stop(self, grace: float = 2.0) -> None:
        await self.server.stop(grace)


async def start_worker(
    cfg: WorkerConfig, runner: StepRunner | None = None
) -> RunningWorker | TPHandle:
    """Opens the port (liveness), loads the model unless given one, then turns readiness on.

    Under tensor parallelism (``--tp``, or a group from the environment) this host's other ranks
    start as child processes; only global rank 0 opens the port (see ``parallel.launch``).
    """
    tp = None
    if runner is None and wants_tp(cfg):
        tp = TPLaunch(cfg, cfg.runner)
        if not tp.serves:
            return await tp.run_follower_host()
    metrics = WorkerMetrics()
    if tp is not None:
        metrics.r.register(tp.ranks_collector())  # every rank of this host, by tp_rank
    serve_metrics(metrics.registry, cfg.metrics_port)
    servicer = WorkerServicer(metrics, cfg.step_thread)
    servicer.profile_limits = ProfileLimits(
        cfg.profile_dir, cfg.max_profile_steps, cfg.max_profile_bytes
    )
    server = ServiceServer("worker", f"{cfg.host}:{cfg.port}", [SERVICE], metrics.registry)
    await server.start(lambda s: worker_pb2_grpc.add_WorkerServiceServicer_to_server(servicer, s))
    if runner is None:
        start = time.perf_counter()
        build: Callable[[WorkerConfig], StepRunner] = (
            build_runner if tp is None else lambda _cfg: tp.build_leader()
        )
        runner = await asyncio.to_thread(build, cfg)
        metrics.load_seconds.set(time.perf_counter() - start)
    handle: RunningWorker | TPHandle = RunningWorker(server, servicer, cfg.drain_seconds)
    if tp is not None:
        tp.workers.on_failure.append(_not_ready_on_failure(server))
        handle = TPHandle(handle, tp)
    servicer.attach(runner)
    await server.set_ready(True)
    info = runner.info
    logger.info(
        "worker ready",
        extra={"kv": {"model": info.model_name, "slots": info.num_slots, "device": info.device}},
    )
    return handle


def _not_ready_on_failure(server: ServiceServer) -> Callable[[str], None]:
    """A failed TP group: readiness NOT_SERVING at once (called from any thread)."""
    loop = asyncio.get_running_loop()

    def callback(reason: str) -> None:
        loop.call_soon_threadsafe(lambda: loop.create_task(server.set_ready(False)))

    return callback
