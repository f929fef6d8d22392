from __future__ import annotations

import pytest

from radixserve.common.outputs import FinishKind
from radixserve.common.types import Constraint, ForwardMode, SamplingParams, StepOutput
from radixserve.scheduler.request import Request
from radixserve.scheduler.scheduler import Scheduler, SchedulerCoreConfig
from tests.scheduler.conftest import assert_no_leak, make_info, make_req
from tests.scheduler.fake_worker import FakeWorker, drive, reference


def outputs(events):
    out, fin = {}, {}
    for e in events:
        out.setdefault(e.rid, []).extend(e.token_ids)
        if e.finish_reason is not None:
            fin[e.rid] = e.finish_reason
    return out, fin


def test_prefill_then_decode_and_worker_protocol(sched, info):
    sched.add_request(make_req("a", [5, 6, 7], max_new=3))
    step = sched.next_step()
    assert step.mode == ForwardMode.EXTEND
    (ri,) = step.reqs
    assert ri.token_ids == [5, 6, 7] and ri.prefix_slots == [] and ri.sampling is not None
    assert ri.sample and len(ri.new_slots) == 3 and 0 not in ri.new_slots
    # overlap: the decode is built while the prefill is in flight
    step2 = sched.next_step()
    assert step2.mode == ForwardMode.DECODE and step2.reqs[0].token_ids is None
    assert step2.reqs[0].row == ri.row and step2.reqs[0].prefix_slots is None
    ev = sched.on_result(StepOutput(step.step_id, [9]))
    assert [(e.rid, e.token_ids, e.finish_reason) for e in ev] == [("a", [9], None)]
    assert ev[0].prompt_tokens == 3 and ev[0].completion_tokens == 1


def test_requests_join_between_steps(sched, info):
    w = FakeWorker(info)
    sched.add_request(make_req("a", [1, 2, 3], max_new=20, ignore_eos=True))
    s0 = sched.next_step()
    sched.on_result(w.run(s0))
    s1 = sched.next_step()
    assert s1.mode == ForwardMode.DECODE and len(s1.reqs) == 1
    sched.on_result(w.run(s1))
    sched.add_request(make_req("b", [4, 5], max_new=20, ignore_eos=True))
    s2 = sched.next_step()  # prefill of the newcomer first
    assert s2.mode == ForwardMode.EXTEND and [r.token_ids for r in s2.reqs] == [[4, 5]]
    sched.on_result(w.run(s2))
    s3 = sched.next_step()
    assert s3.mode == ForwardMode.DECODE and len(s3.reqs) == 2


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("page_size", [1, 4])
def test_outputs_match_reference(overlap, page_size):
    info = make_info(num_slots=2048, page_size=page_size)
    sched = Scheduler(SchedulerCoreConfig(chunked_prefill_size=16), info)
    w = FakeWorker(info, eos_every=25)
    reqs = {}
    for i in range(24):
        prompt = [(i * 7 + j) % 97 + 1 for j in range(3 + i * 3)]
        reqs[str(i)] = (prompt, 5 + i)
        sched.add_request(make_req(str(i), prompt, max_new=5 + i))
    out, fin = outputs(drive(sched, w, overlap=overlap))
    for rid, (prompt, mn) in reqs.items():
        assert out[rid] == reference(prompt, mn, info, 25), rid
    assert set(fin) == set(reqs)
    assert_no_leak(sched)


def test_finish_rules(info):
    sched = Scheduler(SchedulerCoreConfig(), info)
    w = FakeWorker(info, eos_every=3)
    prompt = [11, 12, 13]
    ref = reference(prompt, 50, info, 3)
    assert ref[-1] == 0  # EOS comes early with eos_every=3
    sched.add_request(make_req("eos", prompt, max_new=50))
    sched.add_request(make_req("noeos", prompt, max_new=len(ref) + 2, ignore_eos=True))
    sched.add_request(make_req("stop", prompt, max_new=50, stop_token_ids=(ref[0],)))
    sched.add_request(make_req("len", [40, 41], max_new=1, ignore_eos=True))
    out, fin = outputs(drive(sched, w))
    assert out["eos"] == ref and fin["eos"].kind == FinishKind.STOP
    assert fin["eos"].matched_token == 0
    assert len(out["noeos"]) == len(ref) + 2 and fin["noeos"].kind == FinishKind.LENGTH
    assert out["stop"] == ref[:1] and fin["stop"].matched_token == ref[0]
    assert len(out["len"]) == 1 and fin["len"].kind == FinishKind.LENGTH
    assert_no_leak(sched)


def test_grammar_end_stops_despite_ignore_eos(info):
    # Under a grammar the worker allows EOS only where the grammar can only end, so EOS finishes
    # a constrained request even with ignore_eos; an unconstrained one still runs to the length.
    sched = Scheduler(SchedulerCoreConfig(), info)
    w = FakeWorker(info, eos_every=3)
    prompt = [11, 12, 13]
    ref = reference(prompt, 50, info, 3)
    grammar = Constraint("regex", "[a-z]+")
    sampling = SamplingParams(max_new_tokens=50, ignore_eos=True, constraint=grammar)
    sched.add_request(Request("grammar", prompt, sampling))
    sched.add_request(make_req("plain", prompt, max_new=len(ref) + 2, ignore_eos=True))
    out, fin = outputs(drive(sched, w))
    assert out["grammar"] == ref and fin["grammar"].kind == FinishKind.STOP
    assert fin["grammar"].matched_token == 0
    assert len(out["plain"]) == len(ref) + 2 and fin["plain"].kind == FinishKind.LENGTH
    assert_no_leak(sched)


def test_context_length_finish():
    info = make_info(ctx=12)
    sched = Scheduler(SchedulerCoreConfig(), info)
    sched.add_request(make_req("a", list(range(1, 8)), max_new=5, ignore_eos=True))
    out, fin = outputs(drive(sched, FakeWorker(info)))
    assert len(out["a"]) == 5 and fin["a"].kind == FinishKind.LENGTH
    assert_no_leak(sched)


def test_validation_names_fields(sched):
    with pytest.raises(ValueError, match="max_new_tokens"):
        sched.add_request(make_req("a", [1] * 500, max_new=100))
    with pytest.raises(ValueError, match="input_ids"):
        sched.add_request(make_req("b", [1] * 600, max_new=1))
    with pytest.raises(ValueError, match="input_ids"):
        sched.add_request(make_req("c", [], max_new=1))
    with pytest.raises(ValueError, match="input_ids"):
        sched.add_request(make_req("d", [1, 100], max_new=1))
    with pytest.raises(ValueError, match="max_new_tokens"):
        sched.add_request(make_req("e", [1], max_new=0))
    sched.add_request(make_req("f", [1], max_new=1))
    with pytest.raises(ValueError, match="rid"):
        sched.add_request(make_req("f", [1], max_new=1))
    small = Scheduler(SchedulerCoreConfig(), make_info(num_slots=16))
    with pytest.raises(ValueError, match="input_ids: 16 tokens exceed the KV capacity"):
        small.add_request(make_req("g", [1] * 16, max_new=1))
    with pytest.raises(ValueError, match="max_new_tokens: .* the KV capacity is 15"):
        small.add_request(make_req("h", [1] * 15, max_new=2))
    small.add_request(make_req("i", [1] * 15, max_new=1))  # exactly the pool
    assert small.max_request_len == 16


def test_max_running_requests(info):
    sched = Scheduler(SchedulerCoreConfig(max_running_requests=3), info)
    for i in range(5):
        sched.add_request(make_req(str(i), [i + 1] * 4, max_new=4, ignore_eos=True))
    step = sched.next_step()
    assert len(step.reqs) == 3 and sched.num_running == 3 and sched.num_waiting == 2


def test_max_prefill_tokens(info):
    sched = Scheduler(SchedulerCoreConfig(max_prefill_tokens=10, chunked_prefill_size=0), info)
    for i in range(4):
        sched.add_request(make_req(str(i), [i + 1] * 4, max_new=2))
    sched.add_request(make_req("big", [9] * 30, max_new=2))
    assert [len(r.new_slots) for r in sched.next_step().reqs] == [4, 4]
    assert [len(r.new_slots) for r in sched.next_step().reqs] == [4, 4]  # first may pass
    assert [len(r.new_slots) for r in sched.next_step().reqs] == [30]
