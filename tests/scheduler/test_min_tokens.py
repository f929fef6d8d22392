"""Finish rules with min_new_tokens: EOS and stop tokens cannot end a request before it."""

from __future__ import annotations

from radixserve.common.outputs import FinishKind
from radixserve.common.types import SamplingParams, StepOutput
from radixserve.scheduler.request import Request


def _run(sched, req: Request, tokens: list[int]) -> list[int]:
    """Answers every step with the next of ``tokens``; returns what the request produced."""
    sched.add_request(req)
    produced: list[int] = []
    feed = iter(tokens)
    while not req.finished:
        step = sched.next_step()
        assert step is not None
        out = StepOutput(step.step_id, [next(feed) if r.sample else -1 for r in step.reqs])
        for ev in sched.on_result(out):
            produced += ev.token_ids
    return produced


def test_eos_before_min_new_tokens_does_not_stop(sched):
    sp = SamplingParams(max_new_tokens=10, min_new_tokens=3, stop_token_ids=(7,))
    req = Request("a", [5, 6, 8], sp)
    produced = _run(sched, req, [0, 7, 0, 7, 9, 9])
    assert produced == [0, 7, 0, 7]
    assert req.finish_reason.kind is FinishKind.STOP
    assert req.finish_reason.matched_token == 7


def test_min_new_tokens_zero_stops_at_first_eos(sched):
    req = Request("b", [5, 6, 8], SamplingParams(max_new_tokens=10))
    assert _run(sched, req, [4, 0, 9]) == [4, 0]
    assert req.finish_reason.kind is FinishKind.STOP


def test_min_equal_max_ends_by_length(sched):
    req = Request("c", [5, 6, 8], SamplingParams(max_new_tokens=3, min_new_tokens=3))
    assert _run(sched, req, [0, 0, 0, 0]) == [0, 0, 0]
    assert req.finish_reason.kind is FinishKind.LENGTH


def test_first_step_carries_prompt_len_and_prefix_ids_for_penalties(sched):
    prompt = [5, 6, 8, 9, 11, 12, 13, 14]
    _run(sched, Request("warm", list(prompt), SamplingParams(max_new_tokens=1)), [4])
    sched.add_request(Request("p", prompt + [3], SamplingParams(presence_penalty=1.0)))
    first = next(r for r in sched.next_step().reqs if r.sampling is not None)
    assert first.prompt_len == len(prompt) + 1
    assert first.prefix_slots and first.prefix_ids == prompt[: len(first.prefix_slots)]
