"""The scheduler service on loopback with the embedded model and a small KV pool (issue 4)."""

from __future__ import annotations

import concurrent.futures
import time

import grpc
import pytest

from radixserve.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc, tokenizer_pb2
from radixserve.v1 import tokenizer_pb2_grpc as tok_grpc
from radixserve.worker.config import WorkerConfig
from radixserve.worker.server import build_runner
from tests.stack import start_stack

NUM_SLOTS = 400
SYSTEM = (
    "You are a careful assistant for a travel company. Answer in one short sentence, "
    "never invent facts, and always name the country of any city you mention. "
)


@pytest.fixture(scope="module")
def small_runner():
    return build_runner(WorkerConfig(num_slots=NUM_SLOTS, max_rows=16))


@pytest.fixture
def fresh(small_runner):
    stack = start_stack(runner=small_runner)
    yield stack
    stack.stop()


def generate(address, text, max_new_tokens, **sampling):
    with grpc.insecure_channel(address) as channel:
        stub = tok_grpc.TokenizerServiceStub(channel)
        req = tokenizer_pb2.GenerateRequest(
            text=text,
            sampling=common_pb2.SamplingParams(
                temperature=0, max_new_tokens=max_new_tokens, **sampling
            ),
        )
        ids, usage = [], None
        for resp in stub.Generate(req, timeout=300):
            ids += list(resp.token_ids)
            usage = resp.usage
        return ids, usage


def run_all(address, prompts, max_new_tokens, **sampling):
    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
        futures = [pool.submit(generate, address, p, max_new_tokens, **sampling) for p in prompts]
        return [f.result() for f in futures]


def load(address):
    with grpc.insecure_channel(address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        return stub.GetLoad(scheduler_pb2.GetLoadRequest(), timeout=5)


def wait_idle(address, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = load(address)
        if status.running == 0 and status.waiting == 0:
            return status
        time.sleep(0.05)
    raise AssertionError(f"scheduler still busy: {status}")


def test_shared_prefix_hits_the_cache_and_matches_cache_off(fresh, small_runner):
    cached = fresh
    questions = ["Where is Lyon?", "Where is Porto?", "Where is Graz?", "Where is Turku?"]
    prompts = [SYSTEM + q for q in questions]
    generate(cached.tokenizer_address, prompts[0], 4)  # warm the cache with the system prompt
    with_cache = run_all(cached.tokenizer_address, prompts, 12)
    assert all(u.cached_tokens > 20 for _, u in with_cache[1:])
    assert load(cached.scheduler_address).cache_hit_rate > 0.3
    cached.stop()  # one runner, one Forward stream at a time
    nocache = start_stack(runner=small_runner, scheduler={"disable_radix_cache": True})
    try:
        without = run_all(nocache.tokenizer_address, prompts, 12)
        assert all(u.cached_tokens == 0 for _, u in without)
        assert load(nocache.scheduler_address).cache_hit_rate == 0
    finally:
        nocache.stop()
    assert [ids for ids, _ in with_cache] == [ids for ids, _ in without]


def test_workload_three_times_the_kv_capacity_finishes(fresh):
    prompts = [f"Story {i}: once upon a time, in a land far away," for i in range(12)]
    results = run_all(fresh.tokenizer_address, prompts, 110, ignore_eos=True)
    assert sum(u.prompt_tokens + u.completion_tokens for _, u in results) > 3 * NUM_SLOTS
    assert all(len(ids) == 110 for ids, _ in results)
    body = metrics_text(fresh.metrics_ports["scheduler"])
    retractions = next(
        float(line.split()[-1])
        for line in body.splitlines()
        if line.startswith("radixserve_retractions_total{")
    )
    assert retractions > 0
    status = wait_idle(fresh.scheduler_address)
    assert status.kv_usage == 0.0  # everything is free or evictable cache: nothing leaked
    # Greedy outputs equal those of the same prompts run one at a time (no retraction).
    for prompt, (ids, _) in list(zip(prompts, results, strict=True))[:1]:
        assert generate(fresh.tokenizer_address, prompt, 110, ignore_eos=True)[0] == ids


def metrics_text(port):
    import urllib.request

    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def test_aborting_half_mid_stream_leaks_nothing(fresh):
    def stream(i):
        with grpc.insecure_channel(fresh.tokenizer_address) as channel:
            stub = tok_grpc.TokenizerServiceStub(channel)
            call = stub.Generate(
                tokenizer_pb2.GenerateRequest(
                    text=f"Request {i} says:",
                    sampling=common_pb2.SamplingParams(max_new_tokens=60, ignore_eos=True),
                ),
                timeout=300,
            )
            got = 0
            for resp in call:
                got += len(resp.token_ids)
                if i % 2 and got >= 3:
                    call.cancel()
                    return "aborted"
            return got

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(stream, range(8)))
    assert outcomes.count("aborted") == 4 and outcomes.count(60) == 4
    status = wait_idle(fresh.scheduler_address)
    assert status.kv_usage == 0.0
    with grpc.insecure_channel(fresh.scheduler_address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        flushed = stub.FlushCache(scheduler_pb2.FlushCacheRequest(), timeout=5)
    assert flushed.success
