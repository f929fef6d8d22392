"""The domain enums take their values from the generated ones and miss none of them."""

from __future__ import annotations

from radixserve.common.outputs import FinishKind, FinishReason, Outputs, RequestOutput
from radixserve.common.types import ForwardMode
from radixserve.common.wire import common as wire_common
from radixserve.common.wire import scheduler as wire_scheduler
from radixserve.v1 import common_pb2, worker_pb2


def test_forward_mode_is_the_proto_enum() -> None:
    wire = {n: v for n, v in worker_pb2.ForwardMode.items() if v}  # UNSPECIFIED is never sent
    assert {f"FORWARD_MODE_{m.name}": int(m) for m in ForwardMode} == wire


def test_finish_kinds_are_the_proto_enum_by_its_openai_names() -> None:
    wire = {n: v for n, v in common_pb2.FinishReason.items() if v}
    assert {f"FINISH_REASON_{k.name}" for k in FinishKind} == set(wire)
    for kind in FinishKind:
        number = wire_common.finish_reason_to_pb(kind.value)
        assert wire[f"FINISH_REASON_{kind.name}"] == number
        assert wire_common.finish_kind_from_pb(number) is kind
        assert wire_common.finish_reason_from_pb(number) == kind.value == kind.name.lower()
    assert wire_common.finish_kind_from_pb(common_pb2.FINISH_REASON_UNSPECIFIED) is None


def test_every_finish_reason_reads_back_the_same() -> None:
    reasons = [
        FinishReason.stop(7),
        FinishReason.length(),
        FinishReason.abort(),
        FinishReason.error("worker unavailable", retry_elsewhere=True),
        FinishReason(FinishKind.TOOL_CALLS),
    ]
    events = [RequestOutput(str(i), [1], finish_reason=r) for i, r in enumerate(reasons)]
    resp = wire_scheduler.outputs_to_pb(Outputs(3, events))
    back = wire_scheduler.outputs_from_pb(resp)
    assert [o.finish_reason for o in back] == reasons
    assert back[0].matched_stop_token == 7 and back[3].retry_elsewhere and back[3].error
