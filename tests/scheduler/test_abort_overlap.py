from __future__ import annotations

import random
from collections import deque

import pytest

from radixserve.common.outputs import FinishKind
from radixserve.scheduler.scheduler import Scheduler, SchedulerCoreConfig
from tests.scheduler.conftest import assert_no_leak, make_info, make_req
from tests.scheduler.fake_worker import FakeWorker, drive, reference


def test_abort_waiting_and_unknown(sched):
    sched.add_request(make_req("a", [1, 2], max_new=4))
    assert sched.abort("a") and not sched.abort("a") and not sched.abort("zzz")
    assert sched.next_step() is None and not sched.has_work
    assert_no_leak(sched)


def test_abort_running_mid_overlap(sched, info):
    w = FakeWorker(info)
    sched.add_request(make_req("a", [1, 2, 3], max_new=50, ignore_eos=True))
    sched.add_request(make_req("b", [4, 5, 6], max_new=50, ignore_eos=True))
    s0 = sched.next_step()
    s1 = sched.next_step()  # decode of both while their prefill is in flight
    row_a = s0.reqs[0].row
    assert sched.abort("a")
    ev = sched.on_result(w.run(s0)) + sched.on_result(w.run(s1))
    assert {e.rid for e in ev} == {"b"}  # the aborted request's tokens are dropped
    s2 = sched.next_step()
    assert row_a in s2.release_rows and row_a not in [r.row for r in s2.reqs]
    sched.on_result(w.run(s2))
    sched.abort("b")
    drive(sched, w)
    assert_no_leak(sched)


def test_finished_request_in_next_step_is_dropped(sched, info):
    """Finished by result N while in step N+1: its token there is discarded, row released."""
    w = FakeWorker(info)
    sched.add_request(make_req("a", [1, 2, 3], max_new=50, stop_token_ids=(777,)))
    s0 = sched.next_step()
    s1 = sched.next_step()
    r0 = w.run(s0)
    r0.token_ids[0] = 777  # the worker samples the stop token
    ev = sched.on_result(r0)
    assert ev[0].finish_reason.kind == FinishKind.STOP
    assert sched.on_result(w.run(s1)) == []
    s2 = sched.next_step()
    assert s2 is None  # nothing to run; the row goes out with the next step built
    sched.add_request(make_req("b", [9], max_new=1))
    s3 = sched.next_step()
    assert s0.reqs[0].row in s3.release_rows or s3.reqs[0].row == s0.reqs[0].row
    sched.on_result(w.run(s3))
    drive(sched, w)
    assert_no_leak(sched)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cache", [True, False])
def test_abort_half_mid_stream_no_leak(seed, cache):
    info = make_info(num_slots=300, max_rows=16, page_size=1 + seed % 2 * 3)
    cfg = SchedulerCoreConfig(disable_radix_cache=not cache, chunked_prefill_size=32)
    sched = Scheduler(cfg, info)
    w = FakeWorker(info, eos_every=50)
    rng = random.Random(seed)
    reqs = {}
    for i in range(40):
        prompt = [rng.randrange(1, 100) for _ in range(rng.randrange(1, 80))]
        reqs[str(i)] = (prompt, rng.randrange(1, 60))
        sched.add_request(make_req(str(i), prompt, max_new=reqs[str(i)][1]))
    victims = set(rng.sample(sorted(reqs), 20))
    pending, events = deque(), []
    while sched.has_work:
        step = sched.next_step()
        if step is not None:
            pending.append(w.run(step))
        if victims and rng.random() < 0.3:
            sched.abort(victims.pop())
        if pending and (len(pending) > 1 or step is None):
            events += sched.on_result(pending.popleft())
    out = {}
    for e in events:
        out.setdefault(e.rid, []).extend(e.token_ids)
        if e.finish_reason is not None and e.finish_reason.kind != FinishKind.ABORT:
            prompt, mn = reqs[e.rid]
            assert out[e.rid] == reference(prompt, mn, info, 50)
    assert_no_leak(sched)
    sched.flush_cache()
    assert sched.free_slots == sched.kv.capacity


def test_finished_requests_leave_by_step_n_plus_2():
    info = make_info(num_slots=400, max_rows=8)
    sched = Scheduler(SchedulerCoreConfig(chunked_prefill_size=16), info)
    w = FakeWorker(info, eos_every=7)
    for i in range(20):
        sched.add_request(make_req(str(i), [i % 90 + 1] * (5 + i), max_new=12))
    step_rids: dict[int, set[str]] = {}
    finished_at: dict[str, int] = {}
    pending = deque()
    while sched.has_work:
        step = sched.next_step()
        if step is not None:
            step_rids[step.step_id] = {r.rid for r, _, _ in sched._inflight[-1].entries}
            pending.append(w.run(step))
        if pending and (len(pending) > 1 or step is None):
            out = pending.popleft()
            for e in sched.on_result(out):
                if e.finish_reason is not None:
                    finished_at[e.rid] = out.step_id
    assert len(finished_at) == 20
    for rid, n in finished_at.items():
        later = [s for s, rids in step_rids.items() if s >= n + 2 and rid in rids]
        assert not later, (rid, n, later)
    assert_no_leak(sched)


def test_fail_all_frees_everything(sched, info):
    w = FakeWorker(info)
    for i in range(6):
        sched.add_request(make_req(str(i), [i + 1] * 30, max_new=20, ignore_eos=True))
    s0 = sched.next_step()
    sched.next_step()
    sched.on_result(w.run(s0))
    events = sched.fail_all("worker unavailable: restarted")
    assert sorted(e.rid for e in events) == [str(i) for i in range(6)]
    assert all(e.finish_reason.kind == FinishKind.ERROR for e in events)
    assert all(e.finish_reason.message == "worker unavailable: restarted" for e in events)
    assert not sched.has_work
    assert_no_leak(sched)
