"""What the scheduler tells a tokenizer about its requests: one record, used on both sides.

The scheduler core makes :class:`RequestOutput` records, its server sends them (a ``RequestOutput``
message each, or a row of ``PackedOutputs``) and the tokenizer reads the same records back
(``common/wire/scheduler.py`` converts both ways). No grpc here; the finish kinds are the proto
enum's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from radixserve.common.types import TopLogprobs
from radixserve.v1 import common_pb2

_PROTO_PREFIX = "FINISH_REASON_"


def _kind_name(number: int) -> str:
    """The proto value's name as OpenAI spells a finish reason: FINISH_REASON_STOP -> "stop"."""
    return common_pb2.FinishReason.Name(number).removeprefix(_PROTO_PREFIX).lower()


class FinishKind(str, enum.Enum):
    """Why a request ended: the proto's ``FinishReason`` values (but UNSPECIFIED), named as the
    OpenAI API names them. A str, so ``kind == "stop"`` holds; use ``kind.value`` to print it
    (an f-string gives ``FinishKind.STOP``).

    NOTE: members are listed so that the type checker sees them; their values come from the
    generated enum, and tests/common/test_wire_enums.py checks that none is missing.
    """

    STOP = _kind_name(common_pb2.FINISH_REASON_STOP)  # an EOS or stop token (or stop string)
    LENGTH = _kind_name(common_pb2.FINISH_REASON_LENGTH)  # max_new_tokens or the context length
    ABORT = _kind_name(common_pb2.FINISH_REASON_ABORT)  # the client, a deadline or the server
    ERROR = _kind_name(common_pb2.FINISH_REASON_ERROR)  # a fault; the message names it
    TOOL_CALLS = _kind_name(common_pb2.FINISH_REASON_TOOL_CALLS)  # the tokenizer's, with tools


@dataclass(frozen=True, slots=True)
class FinishReason:
    """Why a request ended, with the details the wire carries beside the kind
    (``RequestOutput.matched_stop_token``, ``error`` and ``retry_elsewhere``).

    Compares equal to its kind, and so to the kind's name: ``reason == "stop"``.
    """

    kind: FinishKind
    matched_token: int | None = None  # the EOS / stop token id for STOP
    message: str = ""  # why, for ERROR (and an ABORT the server decided)
    retry_elsewhere: bool = False  # ERROR before any work, from a draining engine

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):  # a FinishKind is a str too
            return self.kind == other
        if isinstance(other, FinishReason):
            return self._key() == other._key()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.kind)  # NOTE: equal to its kind, so it hashes as the kind does

    def _key(self) -> tuple[FinishKind, int | None, str, bool]:
        return (self.kind, self.matched_token, self.message, self.retry_elsewhere)

    @classmethod
    def stop(cls, token_id: int) -> FinishReason:
        return cls(FinishKind.STOP, matched_token=token_id)

    @classmethod
    def length(cls) -> FinishReason:
        return cls(FinishKind.LENGTH)

    @classmethod
    def abort(cls, message: str = "") -> FinishReason:
        return cls(FinishKind.ABORT, message=message)

    @classmethod
    def error(cls, message: str, retry_elsewhere: bool = False) -> FinishReason:
        return cls(FinishKind.ERROR, message=message, retry_elsewhere=retry_elsewhere)


@dataclass(slots=True)
class RequestOutput:
    """One request's news from one scheduler step (the proto's ``RequestOutput``).

    Token counts are totals so far; ``token_ids`` (and ``logprobs``, ``top_logprobs``: one per
    token when asked for) are new since the request's last output.
    """

    rid: str
    token_ids: list[int]
    logprobs: list[float] | None = None
    finish_reason: FinishReason | None = None  # set in the step the request ended
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache
    top_logprobs: list[TopLogprobs] | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def matched_stop_token(self) -> int | None:
        return None if self.finish_reason is None else self.finish_reason.matched_token

    @property
    def error(self) -> str:
        return "" if self.finish_reason is None else self.finish_reason.message

    @property
    def retry_elsewhere(self) -> bool:
        return self.finish_reason is not None and self.finish_reason.retry_elsewhere


@dataclass
class Outputs:
    """Everything one scheduler step produced for one tokenizer stream (``ConnectResponse``);
    rids are the tokenizer's own. The tokenizer reads it back as the list of ``events``."""

    step_id: int
    events: list[RequestOutput]
