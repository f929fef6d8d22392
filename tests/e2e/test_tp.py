"""``--tp 3`` end to end: a real worker process (rank 0 + two follower child processes) behind
the scheduler and tokenizer, the real ``openai`` client, then a follower killed mid-stream."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import httpx
import openai
import pytest

from radixserve.scheduler.config import SchedulerConfig
from radixserve.scheduler.server import start_scheduler
from radixserve.tokenizer.config import TokenizerConfig
from radixserve.tokenizer.server import start_tokenizer
from radixserve.v1 import worker_pb2, worker_pb2_grpc
from tests.stack import Stack, free_port
from tests.worker.tp_procs import alive, children, free_ports, rank_samples, readiness, ready

pytestmark = pytest.mark.timeout(300)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def tp_stack() -> Iterator[tuple[Stack, subprocess.Popen]]:
    port, host, metrics = free_port(), "127.0.0.1", free_ports(3)
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "radixserve.worker", "--tp", "3", "--host", host, "--port",
         str(port), "--metrics-port", str(metrics), "--num-slots", "2048", "--max-rows", "8",
         "--max-context-len", "512", "--tp-timeout", "20"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="tp-stack-loop", daemon=True)
    thread.start()
    stack = Stack(loop, thread)
    stack.worker_address = f"{host}:{port}"
    ports = {k: free_port() for k in ("scheduler", "tokenizer", "http")}
    scfg = SchedulerConfig(
        host=host, port=ports["scheduler"], metrics_port=0, worker_address=stack.worker_address,
        worker_wait_seconds=240,
    )  # fmt: skip
    tcfg = TokenizerConfig(
        host=host, port=ports["tokenizer"], http_port=ports["http"], metrics_port=0,
        scheduler_address=f"{host}:{ports['scheduler']}", scheduler_wait_seconds=240,
    )  # fmt: skip
    stack.http_url = f"http://{host}:{ports['http']}"
    try:
        stack.handles.append(stack.call(start_scheduler(scfg)))
        stack.handles.append(stack.call(start_tokenizer(tcfg)))
        stack.metrics_ports = {"worker": metrics}
        yield stack, worker
    finally:
        stack.stop()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)


@pytest.fixture(scope="module")
def oai(tp_stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{tp_stack[0].http_url}/v1", api_key="unused", max_retries=0)


def test_tp3_answers_paris_streamed_and_not(tp_stack, oai):
    stack, worker = tp_stack
    assert len(children(worker.pid)) == 2  # followers are real child processes
    with grpc.insecure_channel(stack.worker_address) as ch:
        info = (
            worker_pb2_grpc.WorkerServiceStub(ch)
            .GetWorkerInfo(worker_pb2.GetWorkerInfoRequest(), timeout=10)
            .info
        )
    assert info.tp_size == 3 and info.num_heads == 9 and info.num_kv_heads == 3
    name = oai.models.list().data[0].id
    args = dict(model=name, messages=QUESTION, temperature=0, max_tokens=16)
    whole = oai.chat.completions.create(**args).choices[0].message.content
    assert "Paris" in whole
    chunks = list(oai.chat.completions.create(**args, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    completion = oai.completions.create(
        model=name, prompt="The capital of France is", temperature=0, max_tokens=8
    )
    assert "Paris" in completion.choices[0].text


def test_tp3_structured_output(oai):
    # Rank 0 alone holds the matchers; the followers only run the forward.
    out = oai.completions.create(
        model=oai.models.list().data[0].id,
        prompt="Is Paris in France? Answer:",
        max_tokens=20,
        extra_body={"choice": ["yes", "no"], "ignore_eos": True},
    )
    assert (out.choices[0].text, out.choices[0].finish_reason) in (("yes", "stop"), ("no", "stop"))


def test_every_rank_is_scraped_through_the_worker_port(tp_stack, oai):
    oai.completions.create(model=oai.models.list().data[0].id, prompt="Hi", max_tokens=2)
    base = tp_stack[0].metrics_ports["worker"]
    text = httpx.get(f"http://127.0.0.1:{base}/metrics", timeout=10).text
    ranks = {"0", "1", "2"}
    counts = rank_samples(text, "radixserve_worker_tp_forward_seconds_count")
    assert set(counts) == ranks and all(v > 0 for v in counts.values()), counts
    sent = rank_samples(text, "radixserve_worker_tp_allreduce_bytes_total")
    assert set(sent) == ranks and all(v > 0 for v in sent.values()), sent
    assert rank_samples(text, "radixserve_worker_tp_rank_up") == dict.fromkeys(ranks, 1.0)


def test_killed_follower_fails_the_stream_and_every_rank_exits(tp_stack, oai):
    stack, worker = tp_stack
    followers = children(worker.pid)
    assert len(followers) == 2 and ready(stack.worker_address)
    stream = oai.completions.create(
        model=oai.models.list().data[0].id, prompt="Count: 1, 2, 3,", temperature=0,
        max_tokens=400, stream=True, extra_body={"ignore_eos": True},
    )  # fmt: skip
    next(iter(stream))  # generating
    seen: list[str] = []
    watcher = threading.Thread(target=_watch_readiness, args=(stack.worker_address, seen))
    watcher.start()
    os.kill(followers[1], signal.SIGKILL)
    start, failed = time.monotonic(), False
    try:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].finish_reason not in (None, "stop", "length"):
                failed = True
    except openai.APIError:
        failed = True
    assert failed, "the stream ended as if nothing had happened"
    assert time.monotonic() - start < 15
    assert worker.wait(20) != 0  # rank 0 exits non-zero so that the group is restarted
    deadline = time.monotonic() + 10
    while any(alive(p) for p in followers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in followers)
    watcher.join(10)
    assert "NOT_SERVING" in seen, seen  # readiness dropped before the process went


def _watch_readiness(address: str, seen: list[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not seen or seen[-1] != "DOWN"):
        seen.append(readiness(address))
        time.sleep(0.1)
