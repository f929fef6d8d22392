"""Domain types shared by the services (no grpc, no torch).

The protobuf messages in ``protos/radixserve/v1`` are the wire contract; these dataclasses are what
the cores of the services work with. ``common/wire/`` converts between the two, one module per
proto file, both directions; enums take their numbers from the generated stubs (which hold no
grpc). The defaults of a request's sampling parameters are defined here only.

Scheduler -> worker step semantics (one :class:`StepInput` per step):

* every request in a step owns one row of the worker's req->token table (``row``);
* ``new_slots`` are the KV slot indices of the tokens this step appends to the row, in order;
* ``token_ids`` are those tokens (extend); ``None`` means decode: one new token whose id is the
  token the worker sampled for this row last step (the worker keeps it, the scheduler never
  resends it);
* ``prefix_slots`` is set the first time a row is scheduled: slots of an already-computed prefix
  (from the radix cache) that occupy positions ``[0, len(prefix_slots))`` of the row; the new
  tokens then start at that position. A later extend (next prefill chunk) appends after what the
  row already holds;
* ``sampling`` is set the first time a row is scheduled and kept by the worker until released; a
  request carrying ``sampling`` starts its row over, whatever the row held before (so a row
  released and reused in the same step needs no special order);
* ``prompt_len`` comes with ``sampling``: the row's leading prompt tokens; later ones (outputs
  re-prefilled after a retraction, then sampled ones) count as generated for ``min_new_tokens``
  and the penalties. ``prefix_ids`` also comes with ``sampling`` when the request uses a penalty:
  the token ids at the ``prefix_slots`` positions, which the worker cannot know otherwise (also
  sent for a grammar-constrained request, whose matcher replays output re-prefilled after a
  retraction: see ``SamplingParams.needs_history``);
* ``sample`` is False for a prefill chunk that is not the last one (nothing is sampled); the wire
  says it the other way round (``ForwardReq.skip_sample``: see common/wire/worker.py);
* ``release_rows`` are rows the worker forgets after this step (finished or aborted requests).
  Slots are owned by the scheduler: releasing a row frees no slot on the worker.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass, field

from radixserve.common.errors import InvalidArgument
from radixserve.v1 import worker_pb2

MAX_TOP_LOGPROBS = 20
MAX_RID_BYTES = 256  # a longer request id is refused at both doors and at the scheduler
INT32_MAX = 2**31 - 1
GREEDY_BELOW = 1e-5  # temperatures below this sample greedily (dividing by them overflows)
CONSTRAINT_KINDS = ("json_schema", "regex", "ebnf", "choice")
# The one default for a request's output length (OpenAI max_tokens, the wire's unset field, the
# CLI): every front door and the wire conversion read it from here.
DEFAULT_MAX_NEW_TOKENS = 128


@dataclass(frozen=True)
class Constraint:
    """A grammar the output must match, applied as a token mask by the worker.

    ``kind`` is one of :data:`CONSTRAINT_KINDS`; ``value`` is a JSON schema (text), a regular
    expression, a Lark or GBNF grammar, or a JSON list of strings (``choice``).
    """

    kind: str
    value: str


@dataclass(frozen=True)
class SamplingParams:
    """How to pick the next token. ``temperature == 0`` means greedy."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1 or 0: no top-k
    seed: int | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: bool = False
    min_new_tokens: int = 0  # EOS / stop tokens cannot end the request before this many
    frequency_penalty: float = 0.0  # OpenAI: logit -= f * count in the output
    presence_penalty: float = 0.0  # OpenAI: logit -= p once in the output
    repetition_penalty: float = 1.0  # HF: seen in prompt or output -> logit / r (or * r if < 0)
    top_logprobs: int = 0  # with logprobs: the k most likely tokens per position
    min_p: float = 0.0  # drop tokens whose probability is below min_p * the top probability
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias added to its logit)
    constraint: Constraint | None = None  # structured output: the grammar the output follows

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW or self.top_k == 1

    @property
    def needs_history(self) -> bool:
        """The worker needs the ids of a cached prefix (``ReqInput.prefix_ids``): penalties count
        them, and a grammar replays re-prefilled output (after a retraction)."""
        return self.uses_penalties or self.constraint is not None

    @property
    def uses_penalties(self) -> bool:
        return (
            self.frequency_penalty != 0.0
            or self.presence_penalty != 0.0
            or self.repetition_penalty != 1.0
        )


@dataclass(frozen=True, slots=True)
class TopLogprobs:
    """The most likely tokens at one generated position, most likely first (raw distribution)."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]


class ForwardMode(enum.IntEnum):
    """What a step does: worker.proto's ``ForwardMode``, whose numbers these are (UNSPECIFIED is
    never sent). Listed for the type checker; tests/common/test_wire_enums.py checks that none
    of the generated enum's values is missing."""

    EXTEND = worker_pb2.FORWARD_MODE_EXTEND  # every request brings new token ids (prefill)
    DECODE = worker_pb2.FORWARD_MODE_DECODE  # every request appends its last sampled token
    MIXED = worker_pb2.FORWARD_MODE_MIXED  # a prefill chunk plus decodes


@dataclass
class ReqInput:
    """One request's part of a step (see the module docstring)."""

    row: int
    new_slots: list[int]
    token_ids: list[int] | None = None
    prefix_slots: list[int] | None = None
    sampling: SamplingParams | None = None
    sample: bool = True
    prompt_len: int = 0  # with sampling: leading prompt tokens of the row (0: unknown)
    prefix_ids: list[int] | None = None  # with sampling and penalties: ids at prefix_slots

    @property
    def is_decode(self) -> bool:
        return self.token_ids is None

    @property
    def is_plain_decode(self) -> bool:
        """A decode and nothing else: one slot, sampled, no first-step fields (the common
        decode step's requests; they travel packed and take the worker's one-pass checks)."""
        return (
            self.token_ids is None
            and self.sample
            and self.sampling is None
            and self.prefix_slots is None
            and len(self.new_slots) == 1
        )

    @property
    def num_new_tokens(self) -> int:
        return len(self.new_slots)


@dataclass
class StepInput:
    step_id: int
    mode: ForwardMode
    reqs: list[ReqInput]
    release_rows: list[int] = field(default_factory=list)


@dataclass
class StepOutput:
    """The worker's answer: one entry per request of the step, in the step's order.

    ``token_ids[i]`` is -1 where request i sampled nothing (``sample`` was False).
    ``logprobs[i]`` is the log-probability of the sampled token when the request asked for it.
    ``top_logprobs[i]`` is set when any request asked for top logprobs (None for the others).
    """

    step_id: int
    token_ids: list[int]
    logprobs: list[float] | None = None
    top_logprobs: list[TopLogprobs | None] | None = None
    forward_seconds: float = 0.0


@dataclass(frozen=True)
class ModelInfo:
    """What a worker reports about its model and memory."""

    model_name: str
    vocab_size: int
    max_context_len: int
    num_slots: int  # KV pool size in token slots, slot 0 included (reserved for padding)
    max_rows: int  # rows in the req->token table = most requests alive at once
    eos_token_ids: tuple[int, ...] = ()
    num_layers: int = 0
    hidden_size: int = 0
    num_heads: int = 0
    num_kv_heads: int = 0
    head_dim: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    tp_size: int = 1
    page_size: int = 1


def _f32(value: float) -> float:
    """``value`` as the wire (proto ``float``) carries it: 1e39 becomes inf, 1e-50 becomes 0."""
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


def _check_float(name: str, value: float, lo: float, hi: float, lo_open: bool = False) -> None:
    v = _f32(value)
    ok = math.isfinite(v) and (lo < v if lo_open else lo <= v) and v <= hi  # NaN fails too
    if not ok:
        bracket = "(" if lo_open else "["
        raise InvalidArgument(f"must be in {bracket}{lo:g}, {hi:g}], got {value}", name)


def _check_int(name: str, value: int, lo: int, hi: int = INT32_MAX) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidArgument(f"must be an integer in [{lo}, {hi}], got {value!r}", name)


def validate_sampling(sp: SamplingParams) -> None:
    """Raises InvalidArgument naming the first field out of range (as the wire would carry it)."""
    _check_float("temperature", sp.temperature, 0.0, 1e4)
    _check_float("top_p", sp.top_p, 0.0, 1.0, lo_open=True)
    _check_int("top_k", sp.top_k, -1)
    if sp.seed is not None:
        _check_int("seed", sp.seed, 0, 2**64 - 1)
    _check_int("max_new_tokens", sp.max_new_tokens, 1)
    for t in sp.stop_token_ids:
        _check_int("stop_token_ids", t, 0)
    _check_int("min_new_tokens", sp.min_new_tokens, 0, sp.max_new_tokens)
    for name in ("frequency_penalty", "presence_penalty"):
        _check_float(name, getattr(sp, name), -2.0, 2.0)
    _check_float("repetition_penalty", sp.repetition_penalty, 0.0, 1e4, lo_open=True)
    _check_int("top_logprobs", sp.top_logprobs, 0, MAX_TOP_LOGPROBS)
    if sp.top_logprobs and not sp.logprobs:
        raise InvalidArgument("needs logprobs to be set", "top_logprobs")
    _check_float("min_p", sp.min_p, 0.0, 1.0)
    for token_id, bias in sp.logit_bias:
        _check_int("logit_bias", token_id, 0)
        _check_float("logit_bias", bias, -100.0, 100.0)
    if sp.constraint is not None:
        if sp.constraint.kind not in CONSTRAINT_KINDS:
            kinds = ", ".join(CONSTRAINT_KINDS)
            raise InvalidArgument(f"kind must be one of {kinds}", "constraint")
        if sp.min_new_tokens:
            # NOTE: the grammar decides where the output ends; hiding EOS could leave no token.
            raise InvalidArgument("cannot be combined with a grammar constraint", "min_new_tokens")
