"""Domain types shared by the services (no grpc, no torch).

The protobuf messages in ``protos/radixserve/v1`` are the wire contract; these dataclasses are what
the cores of the services work with. Each ``server.py`` converts between the two.

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
  the token ids at the ``prefix_slots`` positions, which the worker cannot know otherwise;
* ``sample`` is False for a prefill chunk that is not the last one (nothing is sampled);
* ``release_rows`` are rows the worker forgets after this step (finished or aborted requests).
  Slots are owned by the scheduler: releasing a row frees no slot on the worker.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SamplingParams:
    """How to pick the next token. ``temperature == 0`` means greedy."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1 or 0: no top-k
    seed: int | None = None
    max_new_tokens: int = 128
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: bool = False
    min_new_tokens: int = 0  # EOS / stop tokens cannot end the request before this many
    frequency_penalty: float = 0.0  # OpenAI: logit -= f * count in the output
    presence_penalty: float = 0.0  # OpenAI: logit -= p once in the output
    repetition_penalty: float = 1.0  # HF: seen in prompt or output -> logit / r (or * r if < 0)
    top_logprobs: int = 0  # with logprobs: the k most likely tokens per position

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0 or self.top_k == 1

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
    EXTEND = 1  # every request brings new token ids (prefill / prefill chunk)
    DECODE = 2  # every request appends its last sampled token
    MIXED = 3  # a prefill chunk plus decodes


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
