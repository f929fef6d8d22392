"""scheduler.proto <-> domain: a tokenizer's Connect stream, both ways, for both ends (the
tokenizer's scheduler link and the scheduler's server)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from radixserve.common.outputs import FinishReason, Outputs, RequestOutput
from radixserve.common.types import SamplingParams
from radixserve.common.wire.common import (
    FINISH_TO_PB,
    finish_kind_from_pb,
    sampling_from_pb,
    sampling_to_pb,
    top_logprobs_from_pb,
    top_logprobs_to_pb,
)
from radixserve.v1 import scheduler_pb2

R_co = TypeVar("R_co", covariant=True)


class NewRequest(Protocol):
    """What a ``SchedRequest`` carries (the tokenizer's GenerateInput has it, and so does the
    scheduler's Request that is built from it)."""

    @property
    def rid(self) -> str: ...
    @property
    def input_ids(self) -> list[int]: ...
    @property
    def sampling(self) -> SamplingParams: ...
    @property
    def priority(self) -> int: ...


class RequestFactory(Protocol[R_co]):
    """Builds a side's own request from a ``SchedRequest``'s fields (the scheduler's Request)."""

    def __call__(
        self, *, rid: str, input_ids: list[int], sampling: SamplingParams, priority: int
    ) -> R_co: ...


def request_to_pb(req: NewRequest) -> scheduler_pb2.SchedRequest:
    """ValueError or TypeError when a value does not fit the wire (an int32 field)."""
    return scheduler_pb2.SchedRequest(
        rid=req.rid,
        input_ids=req.input_ids,
        sampling=sampling_to_pb(req.sampling),
        priority=req.priority,
    )


def request_from_pb(pb: scheduler_pb2.SchedRequest, make: RequestFactory[R_co]) -> R_co:
    """``make``'s request for ``pb``; InvalidArgument (a ValueError) naming a bad sampling field."""
    return make(
        rid=pb.rid,
        input_ids=list(pb.input_ids),
        sampling=sampling_from_pb(pb.sampling),
        priority=pb.priority,
    )


def hello_to_pb(client_name: str) -> scheduler_pb2.ConnectRequest:
    return scheduler_pb2.ConnectRequest(hello=scheduler_pb2.Hello(client_name=client_name))


def add_to_pb(reqs: Sequence[NewRequest]) -> scheduler_pb2.ConnectRequest:
    """ValueError or TypeError when a value does not fit the wire (see request_to_pb)."""
    pbs = [request_to_pb(r) for r in reqs]
    return scheduler_pb2.ConnectRequest(add=scheduler_pb2.AddRequests(requests=pbs))


def abort_to_pb(rids: list[str]) -> scheduler_pb2.ConnectRequest:
    return scheduler_pb2.ConnectRequest(abort=scheduler_pb2.AbortRequests(rids=rids))


def outputs_to_pb(outputs: Outputs) -> scheduler_pb2.ConnectResponse:
    """Token-only outputs go packed column by column (the per-token case: a few packed arrays
    per step); the rest, one RequestOutput message each."""
    # NOTE: hot path (every step, every request); outputs_from_pb reads the same columns.
    rids: list[str] = []
    counts: list[int] = []
    tokens: list[int] = []
    prompt: list[int] = []
    completion: list[int] = []
    cached: list[int] = []
    full = []
    for out in outputs.events:
        if out.finish_reason is not None or out.logprobs or out.top_logprobs:
            full.append(output_to_pb(out))
            continue
        rids.append(out.rid)
        counts.append(len(out.token_ids))
        tokens += out.token_ids
        prompt.append(out.prompt_tokens)
        completion.append(out.completion_tokens)
        cached.append(out.cached_tokens)
    packed = scheduler_pb2.PackedOutputs(
        rids=rids,
        token_counts=counts,
        token_ids=tokens,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
    )
    return scheduler_pb2.ConnectResponse(step_id=outputs.step_id, outputs=full, packed=packed)


def outputs_from_pb(resp: scheduler_pb2.ConnectResponse) -> list[RequestOutput]:
    """One step's outputs: the packed token-only ones, then the others (the tokenizer needs no
    step id)."""
    p = resp.packed
    out = []
    if p.rids:
        tokens, start = list(p.token_ids), 0
        columns = zip(
            p.rids, p.token_counts, p.prompt_tokens, p.completion_tokens, p.cached_tokens,
            strict=True,
        )  # fmt: skip
        for rid, count, prompt, completion, cached in columns:
            out.append(
                RequestOutput(
                    rid=rid,
                    token_ids=tokens[start : start + count],
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    cached_tokens=cached,
                )
            )
            start += count
    if resp.outputs:
        out += [output_from_pb(o) for o in resp.outputs]
    return out


def output_to_pb(out: RequestOutput) -> scheduler_pb2.RequestOutput:
    pb = scheduler_pb2.RequestOutput(
        rid=out.rid, token_ids=out.token_ids, logprobs=out.logprobs or [], matched_stop_token=-1
    )
    fr = out.finish_reason
    if fr is not None:
        pb.finish_reason = FINISH_TO_PB[fr.kind]
        if fr.matched_token is not None:
            pb.matched_stop_token = fr.matched_token
        if fr.message:
            pb.error = fr.message
        pb.retry_elsewhere = fr.retry_elsewhere
    pb.usage.prompt_tokens = out.prompt_tokens
    pb.usage.completion_tokens = out.completion_tokens
    pb.usage.cached_tokens = out.cached_tokens
    if out.top_logprobs:
        pb.top_logprobs.extend(top_logprobs_to_pb(t) for t in out.top_logprobs)
    return pb


def output_from_pb(pb: scheduler_pb2.RequestOutput) -> RequestOutput:
    finish = None
    kind = finish_kind_from_pb(pb.finish_reason)
    if kind is not None:
        matched = pb.matched_stop_token if pb.matched_stop_token >= 0 else None
        finish = FinishReason(kind, matched, pb.error, pb.retry_elsewhere)
    usage = pb.usage
    return RequestOutput(
        pb.rid,
        list(pb.token_ids),
        list(pb.logprobs) or None,
        finish,
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        [top_logprobs_from_pb(t) for t in pb.top_logprobs] or None,
    )
