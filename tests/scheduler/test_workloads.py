"""Whole-core properties on random workloads: outputs equal the unconstrained reference whatever
the memory pressure, page size, policy or overlap, and nothing leaks."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radixserve.common.outputs import FinishKind
from radixserve.scheduler.scheduler import Scheduler, SchedulerCoreConfig
from tests.scheduler.conftest import assert_no_leak, make_info, make_req
from tests.scheduler.fake_worker import FakeWorker, drive, reference


def run_workload(cfg, info, n, seed, eos_every=40, overlap=True):
    rng = random.Random(seed)
    system = [rng.randrange(1, 100) for _ in range(40)]
    sched = Scheduler(cfg, info)
    reqs = {}
    refused = 0
    for i in range(n):
        prompt = system[: rng.randrange(0, 40)] + [
            rng.randrange(1, 100) for _ in range(rng.randrange(1, 50))
        ]
        max_new = rng.randrange(1, 80)
        req = make_req(str(i), prompt, max_new=max_new, priority=rng.randrange(3))
        peak = -(-(len(prompt) + max_new - 1) // sched.kv.page_size) * sched.kv.page_size
        if peak > sched.kv.capacity:  # cannot fit the pool even alone: refused up front
            with pytest.raises(ValueError, match="max_new_tokens"):
                sched.add_request(req)
            refused += 1
            continue
        reqs[str(i)] = (prompt, max_new)
        sched.add_request(req)
    events = drive(sched, FakeWorker(info, eos_every=eos_every), overlap=overlap)
    out, fin = {}, {}
    for e in events:
        out.setdefault(e.rid, []).extend(e.token_ids)
        if e.finish_reason is not None:
            assert e.rid not in fin, "two finish events"
            fin[e.rid] = e.finish_reason
    assert set(fin) == set(reqs)
    for rid, (prompt, max_new) in reqs.items():
        assert fin[rid].kind != FinishKind.ABORT
        assert out[rid] == reference(prompt, max_new, info, eos_every), rid
    assert_no_leak(sched)
    sched.refused = refused
    return sched


@settings(max_examples=30, deadline=None)
@given(
    num_slots=st.sampled_from([100, 160, 260, 2000]),
    page_size=st.sampled_from([1, 4]),
    cache=st.booleans(),
    mixed=st.booleans(),
    overlap=st.booleans(),
    policy=st.sampled_from(["fcfs", "lpm", "priority"]),
    chunk=st.sampled_from([0, 8, 48]),
    seed=st.integers(0, 10_000),
)
def test_random_workloads(num_slots, page_size, cache, mixed, overlap, policy, chunk, seed):
    info = make_info(num_slots=num_slots, max_rows=12, ctx=256, page_size=page_size)
    cfg = SchedulerCoreConfig(
        disable_radix_cache=not cache,
        enable_mixed_chunk=mixed,
        schedule_policy=policy,
        chunked_prefill_size=chunk,
        eviction_policy="lfu" if seed % 2 else "lru",
    )
    run_workload(cfg, info, n=30, seed=seed, overlap=overlap)


def test_three_times_capacity_finishes_with_retractions():
    info = make_info(num_slots=200, max_rows=32, ctx=256)
    cfg = SchedulerCoreConfig(chunked_prefill_size=64, init_new_token_ratio=0.2)
    sched = run_workload(cfg, info, n=40, seed=3, eos_every=0)  # ~3x what fits at once
    assert sched.num_retractions > 0
    assert sched.new_token_ratio > cfg.min_new_token_ratio


def test_infeasible_requests_are_refused_and_the_rest_finish():
    info = make_info(num_slots=100, max_rows=12, ctx=256, page_size=4)
    sched = run_workload(SchedulerCoreConfig(chunked_prefill_size=8), info, n=40, seed=11)
    assert sched.refused > 0
