"""A fake worker link for EngineLoop tests: the FakeWorker behind an in-memory step stream that
can die, hang or fail a step, and a link whose worker can be down or come back bigger."""

from __future__ import annotations

import asyncio
import logging

from radixserve.common.types import ModelInfo, StepInput, StepOutput
from radixserve.scheduler.engine_io import StepFailed, WorkerGone
from tests.scheduler.fake_worker import FakeWorker

logger = logging.getLogger(__name__)


class FakeStream:
    def __init__(self, worker: FakeWorker) -> None:
        self.worker = worker
        self.results: asyncio.Queue = asyncio.Queue()
        self.sent: list[StepInput] = []
        self.received = 0
        self.max_in_flight = 0
        self.hang = False  # steps are accepted and never answered
        self.fail_next = ""  # the next step is answered with this error
        self.closed = False
        self.errors: list[str] = []  # protocol violations the worker answered with an error

    async def send(self, step: StepInput) -> None:
        if self.closed:
            raise WorkerGone("stream closed")
        await asyncio.sleep(0)  # a real write yields to the event loop
        self.sent.append(step)
        self.max_in_flight = max(self.max_in_flight, len(self.sent) - self.received)
        if self.fail_next:
            self.results.put_nowait(StepFailed(step.step_id, self.fail_next))
            self.fail_next = ""
        elif not self.hang:
            try:
                self.results.put_nowait(self.worker.run(step))
            except AssertionError as exc:  # the real worker answers a bad step with an error
                self.errors.append(str(exc))
                self.results.put_nowait(StepFailed(step.step_id, str(exc)))

    async def recv(self) -> StepOutput | StepFailed:
        item = await self.results.get()
        if isinstance(item, WorkerGone):
            self.results.put_nowait(item)
            raise item
        self.received += 1
        return item

    def kill(self, why: str = "connection reset") -> None:
        self.results.put_nowait(WorkerGone(why))

    def close(self) -> None:
        self.closed = True


class FakeLink:
    def __init__(self, info: ModelInfo, eos_every: int = 0) -> None:
        self.info = info
        self.eos_every = eos_every
        self.up = True
        self.streams: list[FakeStream] = []

    @property
    def stream(self) -> FakeStream:
        return self.streams[-1]

    async def wait_ready(self, timeout: float) -> None:
        if not self.up:
            await asyncio.sleep(min(timeout, 0.01))
            raise TimeoutError("worker not ready")

    async def get_info(self) -> ModelInfo:
        return self.info

    def open_stream(self) -> FakeStream:
        stream = FakeStream(FakeWorker(self.info, self.eos_every))
        self.streams.append(stream)
        return stream
