"""An engine as real processes (``python -m radixserve.scheduler`` / ``.worker``) behind
an in-process front door, and the client calls the engine-drain tests make."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import openai

from radixserve.tokenizer.config import TokenizerConfig
from radixserve.tokenizer.server import start_tokenizer
from radixserve.worker.config import WorkerConfig
from radixserve.worker.server import start_worker
from tests.reliability.conftest import SERVING, WORKER, readiness, wait_for
from tests.stack import Stack, free_port

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


@dataclass
class Proc:
    """A service process, its address and its log file (shown when a test fails)."""

    popen: subprocess.Popen
    address: str
    log: Path

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def sigterm(self) -> float:
        self.popen.send_signal(signal.SIGTERM)
        return time.monotonic()

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.address} still running:\n{self.tail()}") from None


def spawn(service: str, tmp: Path, *args: str) -> Proc:
    port = free_port()
    log = tmp / f"{service}-{port}.log"
    cmd = [sys.executable, "-m", f"radixserve.{service}", "--host", HOST, "--port",
           str(port), "--metrics-port", "0", *args]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RADIXSERVE_LOG_FORMAT": "text"}
    with open(log, "wb") as out:
        popen = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Proc(popen, f"{HOST}:{port}", log)


def wait_ready(proc: Proc, timeout: float = 120) -> None:
    ok = wait_for(
        lambda: proc.popen.poll() is None and readiness(proc.address) == SERVING,
        timeout=timeout,
        every=0.2,
    )
    assert ok, f"{proc.address} not ready:\n{proc.tail()}"


def spawn_worker(tmp: Path, drain: float) -> Proc:
    sizes = ["--num-slots", str(WORKER["num_slots"]), "--max-rows", str(WORKER["max_rows"])]
    return spawn("worker", tmp, *sizes, "--drain-seconds", str(drain))


def spawn_scheduler(tmp: Path, worker_address: str, drain: float) -> Proc:
    args = ["--worker-address", worker_address, "--worker-wait-seconds", "120"]
    return spawn("scheduler", tmp, *args, "--drain-seconds", str(drain))


def _loop_stack() -> Stack:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="drain-test-loop", daemon=True)
    thread.start()
    return Stack(loop, thread)


@contextmanager
def in_process_worker(runner: object) -> Iterator[str]:
    """The suite's loaded model served on a free port (the engine's worker, in this process)."""
    stack = _loop_stack()
    port = free_port()
    cfg = WorkerConfig(host=HOST, port=port, metrics_port=0, **WORKER)
    try:
        stack.handles.append(stack.call(start_worker(cfg, runner), timeout=60))
        yield f"{HOST}:{port}"
    finally:
        stack.stop()


@contextmanager
def front_door(scheduler_address: str) -> Iterator[Stack]:
    """An in-process tokenizer in front of ``scheduler_address``."""
    stack = _loop_stack()
    ports = {k: free_port() for k in ("grpc", "http")}
    cfg = TokenizerConfig(
        host=HOST, port=ports["grpc"], http_port=ports["http"], metrics_port=0,
        scheduler_address=scheduler_address, scheduler_wait_seconds=120, drain_seconds=2,
    )  # fmt: skip
    stack.tokenizer_address = f"{HOST}:{ports['grpc']}"
    stack.http_url = f"http://{HOST}:{ports['http']}"
    try:
        stack.handles.append(stack.call(start_tokenizer(cfg), timeout=120))
        yield stack
    finally:
        stack.stop()


def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.http_url}/v1", api_key="x", max_retries=0, timeout=120)


def stream(stack: Stack, tokens: int, chunks: list[float]) -> tuple[str, int]:
    """One streamed completion of ``tokens`` tokens: (``finished:<reason>`` or
    ``error:<message>``, tokens generated as the usage says); ``chunks`` gets the time of each
    chunk."""
    model = stack.handles[-1].frontend.model_name
    outcome, got = "ended without finish_reason", 0
    try:
        for event in client(stack).completions.create(
            model=model, prompt="Tell me a story", max_tokens=tokens, stream=True,
            temperature=0, extra_body={"ignore_eos": True},
            stream_options={"include_usage": True},
        ):  # fmt: skip
            if event.usage is not None:
                got = event.usage.completion_tokens
            if event.choices:
                chunks.append(time.monotonic())
                if event.choices[0].finish_reason:
                    outcome = f"finished:{event.choices[0].finish_reason}"
        return outcome, got
    except openai.APIError as exc:
        return f"error:{exc.message}", got


def plain(stack: Stack, tokens: int) -> str:
    """A non-streamed completion: ``finished:<reason>`` or ``status:<HTTP status>``."""
    model = stack.handles[-1].frontend.model_name
    try:
        resp = client(stack).completions.create(
            model=model, prompt="Late", max_tokens=tokens, temperature=0
        )
        return f"finished:{resp.choices[0].finish_reason}"
    except openai.APIStatusError as exc:
        return f"status:{exc.status_code}"
