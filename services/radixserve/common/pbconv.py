"""Where the conversions used to live, kept for the importers outside common/ and the scheduler
(worker/server.py, tokenizer/server.py, client/): they moved to common/wire/, one module per
proto file. New code imports those modules."""

from __future__ import annotations

from radixserve.common.types import DEFAULT_MAX_NEW_TOKENS, MAX_TOP_LOGPROBS, validate_sampling
from radixserve.common.wire.common import (
    finish_reason_from_pb,
    finish_reason_to_pb,
    model_info_from_pb,
    model_info_to_pb,
    sampling_from_pb,
    sampling_to_pb,
    top_logprobs_from_pb,
    top_logprobs_to_pb,
)
from radixserve.common.wire.worker import output_from_pb, output_to_pb, step_from_pb, step_to_pb

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "MAX_TOP_LOGPROBS",
    "finish_reason_from_pb",
    "finish_reason_to_pb",
    "model_info_from_pb",
    "model_info_to_pb",
    "output_from_pb",
    "output_to_pb",
    "sampling_from_pb",
    "sampling_to_pb",
    "step_from_pb",
    "step_to_pb",
    "top_logprobs_from_pb",
    "top_logprobs_to_pb",
    "validate_sampling",
]
