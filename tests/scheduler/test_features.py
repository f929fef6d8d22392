from __future__ import annotations

import pytest

from radixserve.common.outputs import FinishKind
from radixserve.common.types import ForwardMode
from radixserve.scheduler.policy import make_schedule_policy
from radixserve.scheduler.scheduler import Scheduler, SchedulerCoreConfig
from tests.scheduler.conftest import assert_no_leak, make_info, make_req
from tests.scheduler.fake_worker import FakeWorker, drive, reference


def test_chunked_prefill_one_long_prompt_at_a_time():
    info = make_info()
    sched = Scheduler(SchedulerCoreConfig(chunked_prefill_size=32), info)
    w = FakeWorker(info)
    sched.add_request(make_req("a", [1 + i % 90 for i in range(100)], max_new=4))
    sched.add_request(make_req("b", [2 + i % 90 for i in range(100)], max_new=4))
    steps = []
    for _ in range(4):
        steps.append(sched.next_step())
        sched.on_result(w.run(steps[-1]))
    a_parts = [[r for r in s.reqs if r.row == steps[0].reqs[0].row] for s in steps]
    assert [len(p[0].new_slots) for p in a_parts] == [32, 32, 32, 4]
    assert [p[0].sample for p in a_parts] == [False, False, False, True]
    assert [p[0].prefix_slots is not None for p in a_parts] == [True, False, False, False]
    assert all(len(s.reqs) == 1 for s in steps[:3])  # b waits while a is mid-chunk
    assert len(steps[3].reqs) == 2 and len(steps[3].reqs[1].new_slots) == 28
    drive(sched, w)
    assert_no_leak(sched)


def test_unfinished_chunk_is_cached_for_others():
    info = make_info()
    sched = Scheduler(SchedulerCoreConfig(chunked_prefill_size=32), info)
    w = FakeWorker(info)
    prompt = [1 + i % 90 for i in range(100)]
    sched.add_request(make_req("a", prompt, max_new=4))
    for _ in range(2):
        sched.on_result(w.run(sched.next_step()))
    assert sched.cached_slots == 64  # both computed chunks handed to the tree
    sched.add_request(make_req("b", prompt[:70] + [5, 5], max_new=4))
    events = drive(sched, w)
    b_first = next(e for e in events if e.rid == "b")
    assert b_first.cached_tokens >= 64
    assert_no_leak(sched)


def test_new_token_ratio_decays_to_min():
    info = make_info()
    cfg = SchedulerCoreConfig(
        init_new_token_ratio=0.5, min_new_token_ratio=0.2, new_token_ratio_decay_steps=10
    )
    sched = Scheduler(cfg, info)
    w = FakeWorker(info)
    sched.add_request(make_req("a", [1, 2], max_new=40, ignore_eos=True))
    sched.on_result(w.run(sched.next_step()))  # extend: no decay
    assert sched.new_token_ratio == 0.5
    for _ in range(5):
        sched.on_result(w.run(sched.next_step()))
    assert sched.new_token_ratio == pytest.approx(0.35)
    for _ in range(10):
        sched.on_result(w.run(sched.next_step()))
    assert sched.new_token_ratio == pytest.approx(0.2)


def test_admission_reserves_running_budget():
    info = make_info(num_slots=201)  # 200 usable slots
    sched = Scheduler(SchedulerCoreConfig(init_new_token_ratio=0.7), info)
    w = FakeWorker(info)
    sched.add_request(make_req("a", [1] * 10, max_new=150, ignore_eos=True))
    sched.on_result(w.run(sched.next_step()))
    # a reserves ~149 x 0.7 = 104: 200 - 10 - 104 = 86 < 10 + 100 + 1 for b
    sched.add_request(make_req("b", [2] * 10, max_new=100))
    step = sched.next_step()
    assert step.mode == ForwardMode.DECODE and sched.num_waiting == 1
    sched.abort("b")
    sched.add_request(make_req("c", [2] * 10, max_new=60))  # 71 fits
    sched.on_result(w.run(step))
    assert sched.next_step().mode == ForwardMode.EXTEND and sched.num_waiting == 0


def test_retraction_picks_fewest_outputs_and_outputs_stay_exact():
    info = make_info(num_slots=41)  # 40 usable slots
    cfg = SchedulerCoreConfig(
        init_new_token_ratio=0.0, min_new_token_ratio=0.0, clip_max_new_tokens=1
    )
    sched = Scheduler(cfg, info)
    w = FakeWorker(info)
    a = make_req("a", [3] * 10, max_new=25, ignore_eos=True)
    b = make_req("b", [4] * 10, max_new=25, ignore_eos=True)
    sched.add_request(a)
    for _ in range(6):
        sched.on_result(w.run(sched.next_step()))
    sched.add_request(b)
    events = drive(sched, w)
    assert b.num_retractions >= 1 and a.num_retractions == 0
    assert sched.num_retractions == b.num_retractions
    assert a.output_ids == reference(a.input_ids, 25, info, 0)
    assert b.output_ids == reference(b.input_ids, 25, info, 0)
    assert sum(len(e.token_ids) for e in events if e.rid == "b") == 25
    assert_no_leak(sched)


def test_request_that_cannot_fit_alone_is_refused_and_one_that_just_fits_runs():
    info = make_info(num_slots=21, ctx=64)  # 20 usable slots
    sched = Scheduler(SchedulerCoreConfig(), info)
    with pytest.raises(ValueError, match="max_new_tokens: 15 prompt tokens \\+ 7 new"):
        sched.add_request(make_req("a", [3] * 15, max_new=7, ignore_eos=True))
    assert not sched.has_work
    sched.add_request(make_req("b", [3] * 15, max_new=6, ignore_eos=True))  # 20 slots at peak
    events = drive(sched, FakeWorker(info))
    assert [t for e in events for t in e.token_ids] == reference([3] * 15, 6, info, 0)
    assert events[-1].finish_reason.kind == FinishKind.LENGTH
    assert_no_leak(sched)


@pytest.mark.parametrize("page_size", [1, 4])
def test_retracted_request_at_its_peak_is_readmitted_alone(page_size):
    """A request back in the queue with one token left needs the whole pool: it runs alone."""
    info = make_info(num_slots=40 + page_size, ctx=64, page_size=page_size)  # 40 usable
    sched = Scheduler(SchedulerCoreConfig(), info)
    req = make_req("big", [5] * 10, max_new=31, ignore_eos=True)  # 40 slots at peak
    req.output_ids = reference(req.input_ids, 30, info, 0)  # as if retracted after 30 tokens
    sched.add_request(req)
    step = sched.next_step()
    assert step is not None and len(step.reqs[0].new_slots) == 40
    events = sched.on_result(FakeWorker(info).run(step))
    assert req.output_ids == reference(req.input_ids, 31, info, 0)
    assert events[0].finish_reason.kind == FinishKind.LENGTH
    assert_no_leak(sched)


def test_retraction_under_pressure_keeps_outputs_exact():
    info = make_info(num_slots=41, ctx=64)  # 40 usable
    cfg = SchedulerCoreConfig(
        init_new_token_ratio=0.0, min_new_token_ratio=0.0, clip_max_new_tokens=1
    )
    sched = Scheduler(cfg, info)
    w = FakeWorker(info)
    small = make_req("small", [6] * 8, max_new=25, ignore_eos=True)
    big = make_req("big", [5] * 10, max_new=31, ignore_eos=True)  # 40 slots at peak
    sched.add_request(small)
    for _ in range(4):
        sched.on_result(w.run(sched.next_step()))
    sched.add_request(big)
    drive(sched, w)
    assert big.output_ids == reference(big.input_ids, 31, info, 0)
    assert small.output_ids == reference(small.input_ids, 25, info, 0)
    assert big.num_retractions >= 1
    assert_no_leak(sched)


def test_lpm_priority_fcfs_orders():
    info = make_info()
    for policy, first in (("fcfs", "x"), ("lpm", "y"), ("priority", "z")):
        sched = Scheduler(SchedulerCoreConfig(schedule_policy=policy, max_running_requests=1), info)
        w = FakeWorker(info)
        shared = [7] * 20
        sched.add_request(make_req("warm", shared + [1], max_new=1))
        drive(sched, w)
        sched.add_request(make_req("x", [9] * 20, max_new=1))
        sched.add_request(make_req("y", shared + [2], max_new=1))
        sched.add_request(make_req("z", [8] * 20, max_new=1, priority=5))
        step = sched.next_step()
        assert [r.rid for r in sched.running.values()] == [first], policy
        sched.on_result(w.run(step))
        drive(sched, w)
        assert_no_leak(sched)


def test_unknown_policy_lists_known():
    with pytest.raises(ValueError, match="fcfs, lpm, priority"):
        make_schedule_policy("sjf")
    with pytest.raises(ValueError, match="schedule_policy"):
        SchedulerCoreConfig(schedule_policy="sjf")


@pytest.mark.parametrize("page_size", [1, 4])
def test_shared_prefix_hits_and_same_outputs_as_cache_off(page_size):
    info = make_info(page_size=page_size)
    outs = {}
    for cache in (True, False):
        sched = Scheduler(SchedulerCoreConfig(disable_radix_cache=not cache), info)
        system = [(i * 13) % 97 + 1 for i in range(64)]
        for i in range(16):
            sched.add_request(make_req(str(i), system + [i + 1, i + 2], max_new=6))
        events = drive(sched, FakeWorker(info, eos_every=30))
        outs[cache] = sorted((e.rid, e.token_ids) for e in events)
        if cache:
            assert sched.cache_hit_rate > 0.5 and sched.cached_slots > 0
        else:
            assert sched.cache_hit_rate == 0 and sched.cached_slots == 0
        assert_no_leak(sched)
    assert outs[True] == outs[False]


def test_extra_key_namespaces_in_scheduler():
    info = make_info()
    sched = Scheduler(SchedulerCoreConfig(), info)
    w = FakeWorker(info)
    sched.add_request(make_req("a", [5] * 30, max_new=1, extra_key="salt-1"))
    drive(sched, w)
    sched.add_request(make_req("b", [5] * 30, max_new=1, extra_key="salt-2"))
    sched.add_request(make_req("c", [5] * 30, max_new=1, extra_key="salt-1"))
    events = drive(sched, w)
    hits = {e.rid: e.cached_tokens for e in events}
    assert hits == {"b": 0, "c": 29}


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("max_rows", [1, 2])
def test_every_row_can_run(max_rows, overlap):
    """No spare row: a released row is reused at once (its new request starts it over)."""
    info = make_info(max_rows=max_rows)
    sched = Scheduler(SchedulerCoreConfig(), info)
    reqs = {str(i): [i + 1] * 5 for i in range(5)}
    for rid, p in reqs.items():
        sched.add_request(make_req(rid, p, max_new=3))
    assert sched.max_running == max_rows
    worker = FakeWorker(info)
    first = sched.next_step()
    assert len(first.reqs) == max_rows
    events = sched.on_result(worker.run(first)) + drive(sched, worker, overlap=overlap)
    for rid, p in reqs.items():
        assert [t for e in events if e.rid == rid for t in e.token_ids] == reference(p, 3, info, 0)
    assert_no_leak(sched)


def test_page_size_from_worker_flush_logprobs_and_fail_step():
    info = make_info(page_size=4)
    sched = Scheduler(SchedulerCoreConfig(), info)
    assert sched.kv.page_size == 4
    w = FakeWorker(info)
    sched.add_request(make_req("a", [1] * 9, max_new=2, logprobs=True))
    events = drive(sched, w)
    assert all(e.logprobs == [-0.5] for e in events)
    assert sched.flush_cache() == (True, 8)
    sched.add_request(make_req("b", [1] * 9, max_new=5))
    step = sched.next_step()
    (ev,) = sched.fail_step(step.step_id, "worker unavailable")
    assert ev.rid == "b" and ev.finish_reason.message == "worker unavailable"
    assert ev.finish_reason.kind == FinishKind.ERROR
    assert not sched.has_work
    assert_no_leak(sched)


def test_in_batch_shared_prefix_waits_one_step_then_hits():
    info = make_info()
    sched = Scheduler(SchedulerCoreConfig(), info)
    w = FakeWorker(info)
    system = [(i * 13) % 97 + 1 for i in range(64)]
    for i in range(4):
        sched.add_request(make_req(str(i), system + [i + 1], max_new=2))
    sched.add_request(make_req("other", [3] * 10, max_new=2))
    s0 = sched.next_step()
    assert len(s0.reqs) == 2  # "0" and "other"; 1-3 would recompute the system prompt
    sched.on_result(w.run(s0))
    s1 = sched.next_step()
    assert s1.mode == ForwardMode.EXTEND and [len(r.new_slots) for r in s1.reqs] == [1, 1, 1]
    sched.on_result(w.run(s1))
    drive(sched, w)
    assert_no_leak(sched)


def test_sharers_of_a_chunked_prompt_wait_for_its_prefill():
    info = make_info()
    sched = Scheduler(SchedulerCoreConfig(chunked_prefill_size=40), info)
    w = FakeWorker(info)
    system = [(i * 13) % 97 + 1 for i in range(120)]
    sched.add_request(make_req("long", system + [1], max_new=2))
    sched.on_result(w.run(sched.next_step()))  # 40 of 121 tokens computed and cached
    sched.add_request(make_req("sharer", system + [2], max_new=2))
    s1 = sched.next_step()  # next chunk of "long"; "sharer" would recompute 80 tokens
    assert len(s1.reqs) == 1 and sched.num_waiting == 1
    sched.on_result(w.run(s1))
    events = drive(sched, w)
    assert next(e for e in events if e.rid == "sharer").cached_tokens == 120
    assert_no_leak(sched)


@pytest.mark.parametrize("overlap", [True, False])
def test_rows_all_finishing_together_do_not_stall(overlap):
    info = make_info(max_rows=3)
    sched = Scheduler(SchedulerCoreConfig(), info)
    for i in range(10):
        sched.add_request(make_req(str(i), [i + 1] * 4, max_new=5, ignore_eos=True))
    events = drive(sched, FakeWorker(info), overlap=overlap)  # raises if it stalls
    assert sum(e.finish_reason is not None for e in events) == 10
    assert_no_leak(sched)
