"""Conversions between the shared protobuf messages and the domain types of services.common."""

from __future__ import annotations

import json
from typing import cast

from radixserve.common.types import (
    MAX_TOP_LOGPROBS,
    Constraint,
    ForwardMode,
    ModelInfo,
    ReqInput,
    SamplingParams,
    StepInput,
    StepOutput,
    TopLogprobs,
    validate_sampling,
)
from radixserve.v1 import common_pb2, worker_pb2

__all__ = ["MAX_TOP_LOGPROBS", "validate_sampling"]  # re-exported: they moved to types

DEFAULT_MAX_NEW_TOKENS = 128


def sampling_from_pb(
    pb: common_pb2.SamplingParams, default_max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
) -> SamplingParams:
    """Fills unset fields with defaults and validates; raises InvalidArgument naming the field."""
    sp = SamplingParams(
        temperature=pb.temperature if pb.HasField("temperature") else 1.0,
        top_p=pb.top_p if pb.HasField("top_p") else 1.0,
        top_k=pb.top_k if pb.HasField("top_k") else -1,
        seed=pb.seed if pb.HasField("seed") else None,
        max_new_tokens=(
            pb.max_new_tokens if pb.HasField("max_new_tokens") else default_max_new_tokens
        ),
        stop_token_ids=tuple(pb.stop_token_ids),
        ignore_eos=pb.ignore_eos,
        logprobs=pb.logprobs,
        min_new_tokens=pb.min_new_tokens,
        frequency_penalty=pb.frequency_penalty,
        presence_penalty=pb.presence_penalty,
        repetition_penalty=pb.repetition_penalty if pb.HasField("repetition_penalty") else 1.0,
        top_logprobs=pb.top_logprobs,
        min_p=pb.min_p,
        logit_bias=tuple(sorted(pb.logit_bias.items())),
        constraint=_constraint_from_pb(pb),
    )
    validate_sampling(sp)
    return sp


def _constraint_from_pb(pb: common_pb2.SamplingParams) -> Constraint | None:
    kind = pb.WhichOneof("constraint")
    if kind is None:
        return None
    if kind == "choice":
        return Constraint("choice", json.dumps(list(pb.choice.values)))
    return Constraint(kind, getattr(pb, kind))


def _constraint_to_pb(c: Constraint, pb: common_pb2.SamplingParams) -> None:
    if c.kind == "choice":
        pb.choice.values.extend(json.loads(c.value))
    else:
        setattr(pb, c.kind, c.value)


def sampling_to_pb(sp: SamplingParams) -> common_pb2.SamplingParams:
    pb = common_pb2.SamplingParams(
        temperature=sp.temperature,
        top_p=sp.top_p,
        top_k=sp.top_k,
        max_new_tokens=sp.max_new_tokens,
        stop_token_ids=list(sp.stop_token_ids),
        ignore_eos=sp.ignore_eos,
        logprobs=sp.logprobs,
    )
    if sp.seed is not None:
        pb.seed = sp.seed
    # Left unset at their defaults, so the common case stays as small on the wire as before.
    if sp.min_new_tokens:
        pb.min_new_tokens = sp.min_new_tokens
    if sp.frequency_penalty:
        pb.frequency_penalty = sp.frequency_penalty
    if sp.presence_penalty:
        pb.presence_penalty = sp.presence_penalty
    if sp.repetition_penalty != 1.0:
        pb.repetition_penalty = sp.repetition_penalty
    if sp.top_logprobs:
        pb.top_logprobs = sp.top_logprobs
    if sp.min_p:
        pb.min_p = sp.min_p
    if sp.logit_bias:
        pb.logit_bias.update(dict(sp.logit_bias))
    if sp.constraint is not None:
        _constraint_to_pb(sp.constraint, pb)
    return pb


def top_logprobs_to_pb(top: TopLogprobs | None) -> common_pb2.TopLogprobs:
    if top is None:
        return common_pb2.TopLogprobs()
    return common_pb2.TopLogprobs(token_ids=top.token_ids, logprobs=top.logprobs)


def top_logprobs_from_pb(pb: common_pb2.TopLogprobs) -> TopLogprobs:
    return TopLogprobs(tuple(pb.token_ids), tuple(pb.logprobs))


_INFO_FIELDS = (
    "model_name", "vocab_size", "max_context_len", "num_slots", "max_rows", "num_layers",
    "hidden_size", "num_heads", "num_kv_heads", "head_dim", "dtype", "device", "tp_size",
    "page_size",
)  # fmt: skip


def model_info_to_pb(info: ModelInfo) -> common_pb2.ModelInfo:
    pb = common_pb2.ModelInfo(**{f: getattr(info, f) for f in _INFO_FIELDS})
    pb.eos_token_ids.extend(info.eos_token_ids)
    return pb


def model_info_from_pb(pb: common_pb2.ModelInfo) -> ModelInfo:
    return ModelInfo(
        **{f: getattr(pb, f) for f in _INFO_FIELDS}, eos_token_ids=tuple(pb.eos_token_ids)
    )


def step_to_pb(step: StepInput) -> worker_pb2.ForwardRequest:
    # NOTE: the domain ForwardMode's values are the wire enum's numbers (the stubs give the wire
    # enum no constructor from an int).
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


def finish_reason_to_pb(reason: str | None) -> common_pb2.FinishReason:
    """``"stop"``/``"length"``/``"abort"``/``"error"``/``"tool_calls"`` (or None) -> the enum."""
    if not reason:
        return common_pb2.FINISH_REASON_UNSPECIFIED  # 0
    return common_pb2.FinishReason.Value(f"FINISH_REASON_{reason.upper()}")


def finish_reason_from_pb(value: int) -> str | None:
    """``FinishReason`` value -> ``"stop"``/``"length"``/``"abort"``/``"error"``/``"tool_calls"``;
    None if unset."""
    if not value:
        return None
    return common_pb2.FinishReason.Name(value).removeprefix("FINISH_REASON_").lower()
