"""worker.proto <-> domain: the step stream (ForwardRequest -> StepInput, StepOutput ->
ForwardResponse and back), used by the scheduler's worker client and the worker's server.

NOTE (``sample`` / ``skip_sample``): the domain says whether a request samples (``sample``, True
for nearly every request), the wire whether it does not (``ForwardReq.skip_sample``): a proto3
bool's unset value is false, so the common case costs nothing on the wire and a sender that
omits the field means "sample". Renaming the wire field to ``sample`` would invert the meaning of
field 6 for any peer built from the old stubs; this module is the only place the two meet.
"""

from __future__ import annotations

from typing import cast

from radixserve.common.types import ForwardMode, ReqInput, StepInput, StepOutput
from radixserve.common.wire.common import (
    sampling_from_pb,
    sampling_to_pb,
    top_logprobs_from_pb,
    top_logprobs_to_pb,
)
from radixserve.v1 import worker_pb2


def step_to_pb(step: StepInput) -> worker_pb2.ForwardRequest:
    """A plain decode step (every request ``is_plain_decode``) travels packed, two int columns;
    any other, one ForwardReq per request."""
    # NOTE: ForwardMode's values are the wire enum's numbers (they are taken from it).
    mode = cast(worker_pb2.ForwardMode, int(step.mode))
    pb = worker_pb2.ForwardRequest(step_id=step.step_id, mode=mode, release_rows=step.release_rows)
    if step.mode == ForwardMode.DECODE and step.reqs and all(r.is_plain_decode for r in step.reqs):
        pb.decode.rows.extend([r.row for r in step.reqs])
        pb.decode.new_slots.extend([r.new_slots[0] for r in step.reqs])
        return pb
    for r in step.reqs:
        req = pb.reqs.add(row=r.row, new_slots=r.new_slots, skip_sample=not r.sample)
        if r.token_ids is not None:
            req.token_ids.extend(r.token_ids)
        if r.prefix_slots:
            req.prefix_slots.extend(r.prefix_slots)
        if r.sampling is not None:
            req.sampling.CopyFrom(sampling_to_pb(r.sampling))
            req.prompt_len = r.prompt_len
            if r.prefix_ids:
                req.prefix_ids.extend(r.prefix_ids)
    return pb


def step_from_pb(pb: worker_pb2.ForwardRequest) -> StepInput:
    """The step; ValueError when its packed decode form is malformed."""
    if pb.HasField("decode"):
        d = pb.decode
        if pb.reqs:
            raise ValueError("decode: a packed decode step cannot also carry reqs")
        if len(d.rows) != len(d.new_slots):
            raise ValueError(f"decode: {len(d.rows)} rows but {len(d.new_slots)} new_slots")
        reqs = [ReqInput(row, [slot]) for row, slot in zip(d.rows, d.new_slots, strict=True)]
        return StepInput(pb.step_id, ForwardMode(pb.mode), reqs, list(pb.release_rows))
    reqs = []
    for r in pb.reqs:
        is_decode = len(r.token_ids) == 0
        reqs.append(
            ReqInput(
                row=r.row,
                new_slots=list(r.new_slots),
                token_ids=None if is_decode else list(r.token_ids),
                prefix_slots=list(r.prefix_slots) or None,
                sampling=sampling_from_pb(r.sampling) if r.HasField("sampling") else None,
                sample=not r.skip_sample,
                prompt_len=r.prompt_len,
                prefix_ids=list(r.prefix_ids) or None,
            )
        )
    return StepInput(pb.step_id, ForwardMode(pb.mode), reqs, list(pb.release_rows))


def output_to_pb(out: StepOutput) -> worker_pb2.ForwardResponse:
    pb = worker_pb2.ForwardResponse(
        step_id=out.step_id,
        token_ids=out.token_ids,
        logprobs=out.logprobs or [],
        forward_seconds=out.forward_seconds,
    )
    if out.top_logprobs is not None:
        pb.top_logprobs.extend(top_logprobs_to_pb(t) for t in out.top_logprobs)
    return pb


def output_from_pb(pb: worker_pb2.ForwardResponse) -> StepOutput:
    top = None
    if pb.top_logprobs:
        top = [top_logprobs_from_pb(t) if t.token_ids else None for t in pb.top_logprobs]
    return StepOutput(
        step_id=pb.step_id,
        token_ids=list(pb.token_ids),
        logprobs=list(pb.logprobs) or None,
        top_logprobs=top,
        forward_seconds=pb.forward_seconds,
    )
