"""Profiling a live worker: a torch-profiler Chrome trace of a window of steps, with NVTX ranges
(and matching profiler ranges) around each step, its phases and each decoder layer.

Nothing is installed until profiling starts: :func:`install_ranges` wraps the runner's step,
forward, attention prepare, sampling and graph replay, and hooks every decoder layer and its
children, then removes all of it on stop, so an unprofiled worker runs exactly its usual code.
Inside a CUDA-graph replay the per-layer ranges are not seen (the graph was captured without
them); the replay itself is one range.

:class:`ProfileRPCs` is the admin half of ``WorkerService`` (StartProfile / StopProfile), mixed
into the servicer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from radixserve.v1 import worker_pb2

logger = logging.getLogger(__name__)
DEFAULT_DIR = "/tmp/radixserve-profile"
_MODES = {1: "prefill", 2: "decode", 3: "mixed"}


class _Ranges:
    """A stack of NVTX (on CUDA) + torch.profiler ranges."""

    def __init__(self, cuda: bool) -> None:
        import torch

        self.torch = torch
        self.cuda = cuda
        self.open: list[Any] = []

    def push(self, name: str) -> None:
        if self.cuda:
            self.torch.cuda.nvtx.range_push(name)
        rf = self.torch.profiler.record_function(name)
        rf.__enter__()
        self.open.append(rf)

    def pop(self) -> None:
        if self.open:
            self.open.pop().__exit__(None, None, None)
        if self.cuda:
            self.torch.cuda.nvtx.range_pop()

    def wrap(self, name: Callable[..., str] | str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def ranged(*args: Any, **kwargs: Any) -> Any:
            self.push(name(*args) if callable(name) else name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.pop()

        return ranged


def _step_name(batch: Any) -> str:
    return f"step {batch.step_id} {_MODES.get(int(batch.mode), 'mixed')} bs={len(batch.reqs)}"


def install_ranges(runner: Any, on_step: Callable[[], None] | None = None) -> Callable[[], None]:
    """Puts ranges around the runner's step, phases and layers; returns the undo."""
    ranges = _Ranges(runner.device.type == "cuda")
    undo: list[Callable[[], None]] = []

    def patch(obj: Any, attr: str, name: Callable[..., str] | str) -> None:
        if obj is None or not hasattr(obj, attr):
            return
        wrapped = ranges.wrap(name, getattr(obj, attr))
        setattr(obj, attr, wrapped)
        undo.append(lambda: obj.__dict__.pop(attr, None))

    patch(runner.model, "forward", "forward")
    patch(runner.attn_backend, "prepare", "attention prepare")
    patch(runner, "_sample", "sample")
    patch(getattr(runner, "graphs", None), "run", "cuda graph replay")
    step = runner.step

    @functools.wraps(step)
    def counted_step(batch: Any) -> Any:
        ranges.push(_step_name(batch))
        try:
            return step(batch)
        finally:
            ranges.pop()
            if on_step is not None:
                on_step()

    runner.step = counted_step
    undo.append(lambda: runner.__dict__.pop("step", None))
    for layer_name, layer in _layers(runner.model):
        for child_name, child in [(layer_name, layer), *layer.named_children()]:
            label = child_name if child is layer else f"{layer_name}.{child_name}"
            pre = child.register_forward_pre_hook(lambda *_, n=label: ranges.push(n))
            post = child.register_forward_hook(lambda *_: ranges.pop())
            undo += [pre.remove, post.remove]

    def remove() -> None:
        for fn in reversed(undo):
            fn()

    return remove


def _layers(model: Any) -> list[tuple[str, Any]]:
    """The decoder layers: the entries of the model's ``layers`` ModuleList."""
    for name, module in model.named_modules():
        if name.split(".")[-1] == "layers" and hasattr(module, "__len__"):
            return [(f"layer{i}", m) for i, m in enumerate(module)]
    return []


@dataclass(frozen=True)
class ProfileLimits:
    """Where traces go and how large a profile may get (the worker's config sets them)."""

    root: str = DEFAULT_DIR  # every trace is written under this directory
    max_steps: int = 64  # a profile stops by itself after this many steps at most
    max_bytes: int = 256 * 1024 * 1024  # a larger trace is deleted and reported as an error


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def profile_dir(limits: ProfileLimits, name: str) -> str:
    """The directory of a profile: ``root``, or ``root/<name>`` for a client's plain name.

    A path (absolute, ``..``, a separator) is refused: a client never picks where the worker
    writes (issue 23).
    """
    if not name or name == limits.root:
        return limits.root
    if not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(
            f"output_dir: {name!r} is not a plain name (letters, digits, . _ -; at most 64); "
            f"traces are written under the worker's --profile-dir"
        )
    return str(Path(limits.root) / name)


class StepProfiler:
    """One torch.profiler session over a window of steps. Stopping disables the profiler where
    it runs (quick) and writes the trace on a thread of its own, so steps go on meanwhile."""

    def __init__(self, limits: ProfileLimits | None = None) -> None:
        self.limits = limits or ProfileLimits()
        self.prof: Any = None
        self.remove: Callable[[], None] | None = None
        self.steps = 0
        self.limit = 0
        self.dir = ""
        self.last: Future[tuple[str, int]] | None = None  # the latest trace being written
        self._export = ThreadPoolExecutor(1, thread_name_prefix="profile-export")

    @property
    def active(self) -> bool:
        return self.prof is not None

    def start(self, runner: Any, output_dir: str, num_steps: int, record_shapes: bool) -> str:
        import torch

        if self.active:
            raise RuntimeError("a profile is already running")
        if num_steps < 0 or num_steps > self.limits.max_steps:
            raise ValueError(f"num_steps: must be in [0, {self.limits.max_steps}], got {num_steps}")
        directory = profile_dir(self.limits, output_dir)
        Path(directory).mkdir(parents=True, exist_ok=True)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if runner.device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.prof = torch.profiler.profile(activities=activities, record_shapes=record_shapes)
        self.prof.start()
        self.dir = directory
        self.steps, self.limit = 0, num_steps or self.limits.max_steps
        self.last = None
        self.remove = install_ranges(runner, self._on_step)
        logger.info("profiling started", extra={"kv": {"dir": self.dir, "steps": self.limit}})
        return self.dir

    def _on_step(self) -> None:
        self.steps += 1
        if self.limit and self.steps >= self.limit:
            self.stop()

    def stop(self) -> Future[tuple[str, int]]:
        """Ends the profile; the returned future gives ``(trace path, steps)`` once written."""
        if not self.active:
            raise RuntimeError("no profile is running")
        assert self.remove is not None
        self.remove()
        prof, self.prof = self.prof, None
        prof.stop()  # NOTE: on the starting thread (the profiler is per thread); cheap
        path = str(Path(self.dir) / f"worker-{os.getpid()}-{int(time.time() * 1000)}.trace.json")
        self.last = self._export.submit(self._write, prof, path, self.steps)
        return self.last

    def _write(self, prof: Any, path: str, steps: int) -> tuple[str, int]:
        prof.export_chrome_trace(path)  # NOTE: the slow part (seconds for a long window)
        size = os.path.getsize(path)
        if size > self.limits.max_bytes:
            os.remove(path)
            raise OverflowError(
                f"trace of {size} bytes is over the limit of {self.limits.max_bytes} "
                "(deleted); profile fewer steps"
            )
        logger.info("profiling stopped", extra={"kv": {"trace": path, "steps": steps}})
        return path, steps


class ProfileRPCs:
    """WorkerService.StartProfile / StopProfile, mixed into the servicer (which has ``runner``,
    ``executor`` and ``step_thread``)."""

    runner: Any
    executor: Any
    step_thread: bool

    profile_limits: ProfileLimits = ProfileLimits()

    @property
    def profiler(self) -> StepProfiler:
        if not hasattr(self, "_profiler"):
            self._profiler = StepProfiler(self.profile_limits)
        return self._profiler

    async def _serialized(self, fn: Callable[[], Any]) -> Any:
        # NOTE: with a step thread, profiling changes must not interleave with a running step.
        if self.step_thread:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn)
        return fn()

    async def StartProfile(
        self, request: worker_pb2.StartProfileRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.StartProfileResponse:
        if self.runner is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "model is still loading")
        if self.profiler.active:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "a profile is already running")
        try:
            out = await self._serialized(
                lambda: self.profiler.start(
                    self.runner, request.output_dir, request.num_steps, request.record_shapes
                )
            )
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return worker_pb2.StartProfileResponse(output_dir=out)

    async def StopProfile(
        self, request: worker_pb2.StopProfileRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.StopProfileResponse:
        prof = self.profiler
        if prof.active:
            written = await self._serialized(prof.stop)
        elif prof.last is not None:  # it stopped by itself after num_steps: report that once
            written = prof.last
        else:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no profile is running")
        prof.last = None
        try:
            # NOTE: the trace is written on the profiler's own thread: steps go on meanwhile.
            path, steps = await asyncio.wrap_future(written)
        except OverflowError as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        return worker_pb2.StopProfileResponse(trace_path=path, num_steps=steps)
