"""The sampling extensions survive the wire: SamplingParams, step and result conversions."""

from __future__ import annotations

import pytest

from radixserve.common.errors import InvalidArgument
from radixserve.common.types import (
    ForwardMode,
    ReqInput,
    SamplingParams,
    StepInput,
    StepOutput,
    TopLogprobs,
    validate_sampling,
)
from radixserve.common.wire import common as wire_common
from radixserve.common.wire import worker as wire_worker
from radixserve.v1 import common_pb2

EXTENDED = SamplingParams(
    logprobs=True,
    top_logprobs=3,
    min_new_tokens=4,
    frequency_penalty=0.5,
    presence_penalty=-1.0,
    repetition_penalty=1.25,
)


def test_sampling_round_trip_and_defaults():
    assert wire_common.sampling_from_pb(wire_common.sampling_to_pb(EXTENDED)) == EXTENDED
    default = wire_common.sampling_from_pb(common_pb2.SamplingParams())
    assert default.repetition_penalty == 1.0 and not default.uses_penalties
    plain = wire_common.sampling_to_pb(SamplingParams())  # defaults stay unset on the wire
    assert not plain.HasField("repetition_penalty") and not plain.HasField("top_logprobs")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"frequency_penalty": 2.5}, "frequency_penalty"),
        ({"presence_penalty": float("nan")}, "presence_penalty"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"min_new_tokens": 200}, "min_new_tokens"),
        ({"min_new_tokens": -1}, "min_new_tokens"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
    ],
)
def test_validation_names_the_field(kwargs, field):
    with pytest.raises(InvalidArgument, match=field):
        validate_sampling(SamplingParams(**kwargs))


def test_step_and_result_carry_the_new_fields():
    req = ReqInput(3, [7, 8], [1, 2], [4, 5], EXTENDED, prompt_len=4, prefix_ids=[9, 9])
    back = wire_worker.step_from_pb(wire_worker.step_to_pb(StepInput(1, ForwardMode.EXTEND, [req])))
    got = back.reqs[0]
    assert (got.prompt_len, got.prefix_ids, got.sampling) == (4, [9, 9], EXTENDED)
    top = TopLogprobs((5, 6), (-0.5, -1.5))
    out = StepOutput(1, [5, 9], [-0.5, 0.0], [top, None])
    back_out = wire_worker.output_from_pb(wire_worker.output_to_pb(out))
    assert back_out.top_logprobs == [top, None]
    assert (
        wire_worker.output_from_pb(wire_worker.output_to_pb(StepOutput(2, [1]))).top_logprobs
        is None
    )


def test_plain_decode_steps_travel_packed_and_others_do_not():
    plain = StepInput(4, ForwardMode.DECODE, [ReqInput(2, [30]), ReqInput(0, [31])], [5])
    pb = wire_worker.step_to_pb(plain)
    assert not pb.reqs and list(pb.decode.rows) == [2, 0] and list(pb.decode.new_slots) == [30, 31]
    assert wire_worker.step_from_pb(pb) == plain
    # A request that brings sampling params (or samples nothing) keeps the per-request form.
    first = StepInput(
        5, ForwardMode.DECODE, [ReqInput(2, [30]), ReqInput(1, [32], sampling=EXTENDED)]
    )
    pb = wire_worker.step_to_pb(first)
    assert not pb.HasField("decode") and len(pb.reqs) == 2
    assert wire_worker.step_from_pb(pb).reqs[1].sampling == EXTENDED
    both = wire_worker.step_to_pb(plain)
    both.reqs.add(row=1, new_slots=[3])
    with pytest.raises(ValueError, match="decode: a packed decode step cannot also carry reqs"):
        wire_worker.step_from_pb(both)
