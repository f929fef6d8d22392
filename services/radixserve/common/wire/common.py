"""common.proto <-> domain: sampling parameters, top logprobs, model info, finish reasons."""

from __future__ import annotations

import json

from radixserve.common.outputs import FinishKind
from radixserve.common.types import (
    DEFAULT_MAX_NEW_TOKENS,
    Constraint,
    ModelInfo,
    SamplingParams,
    TopLogprobs,
    validate_sampling,
)
from radixserve.v1 import common_pb2

# The proto's optional scalars that SamplingParams holds under the same name (but max_new_tokens,
# whose default a front door may set). One left unset takes the dataclass's default:
# common/types.py is the one place the defaults are written.
_SCALARS = (
    "temperature", "top_p", "top_k", "seed", "ignore_eos", "logprobs", "min_new_tokens",
    "frequency_penalty", "presence_penalty", "repetition_penalty", "top_logprobs", "min_p",
)  # fmt: skip
# Sent only when they differ from the default, so the common request stays as small on the wire
# as before these fields existed (the others are always sent, as they always were).
_UNLESS_DEFAULT = tuple(
    (name, getattr(SamplingParams(), name))
    for name in (
        "min_new_tokens", "frequency_penalty", "presence_penalty", "repetition_penalty",
        "top_logprobs", "min_p",
    )
)  # fmt: skip


def sampling_from_pb(
    pb: common_pb2.SamplingParams, default_max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
) -> SamplingParams:
    """Fills unset fields with defaults and validates; raises InvalidArgument naming the field."""
    given = {name: getattr(pb, name) for name in _SCALARS if pb.HasField(name)}
    max_new = pb.max_new_tokens if pb.HasField("max_new_tokens") else default_max_new_tokens
    sp = SamplingParams(
        max_new_tokens=max_new,
        stop_token_ids=tuple(pb.stop_token_ids),
        logit_bias=tuple(sorted(pb.logit_bias.items())),
        constraint=_constraint_from_pb(pb),
        **given,
    )
    validate_sampling(sp)
    return sp


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
    for name, default in _UNLESS_DEFAULT:
        value = getattr(sp, name)
        if value != default:
            setattr(pb, name, value)
    if sp.logit_bias:
        pb.logit_bias.update(dict(sp.logit_bias))
    if sp.constraint is not None:
        _constraint_to_pb(sp.constraint, pb)
    return pb


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


# NOTE: built from the generated enum, by name: FinishKind.STOP <-> FINISH_REASON_STOP.
FINISH_TO_PB: dict[FinishKind, common_pb2.FinishReason] = {
    kind: common_pb2.FinishReason.Value(f"FINISH_REASON_{kind.name}") for kind in FinishKind
}
_FINISH_FROM_PB: dict[int, FinishKind] = {number: kind for kind, number in FINISH_TO_PB.items()}


def finish_kind_from_pb(value: int) -> FinishKind | None:
    """The proto's FinishReason -> the kind; None if unset. ValueError for an unknown value."""
    if not value:
        return None
    kind = _FINISH_FROM_PB.get(value)
    if kind is None:
        raise ValueError(f"finish_reason: unknown value {value}")
    return kind


def finish_reason_to_pb(reason: str | None) -> common_pb2.FinishReason:
    """A kind or its name (``"stop"``, ``"length"``, ``"abort"``, ``"error"``, ``"tool_calls"``),
    or None -> the proto's FinishReason. ValueError for another name."""
    if not reason:
        return common_pb2.FINISH_REASON_UNSPECIFIED
    return FINISH_TO_PB[FinishKind(reason)]


def finish_reason_from_pb(value: int) -> str | None:
    """The proto's FinishReason -> its name as the OpenAI API spells it (``"stop"``, ...); None
    if unset."""
    kind = finish_kind_from_pb(value)
    return None if kind is None else kind.value
