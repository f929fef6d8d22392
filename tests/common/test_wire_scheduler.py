"""The scheduler -> tokenizer step message: token-only news packed column by column, the rest one
RequestOutput each; through the wire format the tokenizer reads back the same news."""

from __future__ import annotations

from radixserve.common.outputs import FinishReason, Outputs, RequestOutput
from radixserve.common.types import TopLogprobs
from radixserve.common.wire.scheduler import outputs_from_pb, outputs_to_pb
from radixserve.v1 import scheduler_pb2


def _event(rid: str, ids: list[int], done: int, **kw) -> RequestOutput:
    fields = {"logprobs": None, "finish_reason": None, "cached_tokens": 2, **kw}
    return RequestOutput(rid, ids, prompt_tokens=7, completion_tokens=done, **fields)


def test_token_only_news_is_packed_and_reads_back_the_same() -> None:
    events = [
        _event("a", [11], 1),
        _event("b", [12, 13, 14], 3),  # several tokens in one step
        _event("c", [15], 4, logprobs=[-0.25]),
        _event("d", [16], 5, finish_reason=FinishReason.stop(16)),
        _event("e", [], 0),  # nothing new yet
        _event("f", [], 2, finish_reason=FinishReason.error("worker unavailable: gone")),
        _event("g", [17], 6, logprobs=[-1.0], top_logprobs=[TopLogprobs((17, 3), (-1.0, -2.0))]),
        _event("h", [18], 9),
    ]
    wire = outputs_to_pb(Outputs(41, events)).SerializeToString()
    resp = scheduler_pb2.ConnectResponse.FromString(wire)

    assert resp.step_id == 41
    assert list(resp.packed.rids) == ["a", "b", "e", "h"]
    assert list(resp.packed.token_ids) == [11, 12, 13, 14, 18]
    assert [o.rid for o in resp.outputs] == ["c", "d", "f", "g"]

    got = {o.rid: o for o in outputs_from_pb(resp)}
    assert got.keys() == {ev.rid for ev in events}
    assert got["b"] == RequestOutput(
        "b", [12, 13, 14], prompt_tokens=7, completion_tokens=3, cached_tokens=2
    )
    assert got["e"] == RequestOutput("e", [], prompt_tokens=7, completion_tokens=0, cached_tokens=2)
    assert got["h"].token_ids == [18] and got["h"].completion_tokens == 9
    assert got["c"].logprobs == [-0.25] and got["c"].finish_reason is None
    assert got["d"].finish_reason == "stop" and got["d"].matched_stop_token == 16
    assert got["f"].finish_reason == "error" and got["f"].error == "worker unavailable: gone"
    assert got["g"].top_logprobs == [TopLogprobs((17, 3), (-1.0, -2.0))]


def test_a_step_without_token_only_news_sends_no_packed_rows() -> None:
    resp = outputs_to_pb(Outputs(1, [_event("z", [1], 1, finish_reason=FinishReason.length())]))
    assert not resp.packed.rids and len(resp.outputs) == 1
    assert [o.rid for o in outputs_from_pb(resp)] == ["z"]
