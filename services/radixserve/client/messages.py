"""What the SDK hands its users, and how it builds requests: no channels here.

Sampling keywords (all optional, unset means the server's default): ``temperature``, ``top_p``,
``top_k``, ``seed``, ``max_tokens`` (alias ``max_new_tokens``), ``stop`` (str or list),
``stop_token_ids``, ``ignore_eos``, ``skip_special_tokens``, ``logprobs``, ``top_logprobs``,
``include_stop_str_in_output``, ``min_tokens`` (alias ``min_new_tokens``), ``frequency_penalty``,
``presence_penalty``, ``repetition_penalty``, ``min_p``, ``logit_bias`` ({id: bias}), and one
grammar: ``json_schema`` (dict or text), ``regex``, ``ebnf`` or ``choice`` (list of strings).
``n`` asks for several samples of one prompt.

Chat with tools, as OpenAI's client takes them: ``tools`` (a list of ``{"type": "function",
"function": {"name", "description", "parameters"}}``, or of the bare function dicts),
``tool_choice`` (``"none"``, ``"auto"``, ``"required"``, a function's name or ``{"type":
"function", "function": {"name": ...}}``) and ``parallel_tool_calls``. Messages may carry
``tool_calls`` (role assistant) and ``tool_call_id`` (role tool), so :meth:`Completion.message`
and a tool's answer go straight back into the next request.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from radixserve.common.wire.common import finish_reason_from_pb
from radixserve.common.wire.tokenizer import chat_input_pb
from radixserve.v1 import common_pb2, tokenizer_pb2

_SCALARS = (
    "temperature", "top_p", "top_k", "seed", "ignore_eos", "skip_special_tokens", "logprobs",
    "include_stop_str_in_output", "min_new_tokens", "frequency_penalty", "presence_penalty",
    "repetition_penalty", "top_logprobs",
)  # fmt: skip

Message = Mapping[str, Any]


@dataclass
class ToolCall:
    """A tool call: whole in a :class:`Completion`, a piece of one in a :class:`GenerateChunk`
    (the first piece of a call has its id and name; each piece adds to its arguments)."""

    index: int
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it

    @property
    def args(self) -> Any:
        """The arguments, parsed."""
        return json.loads(self.arguments)

    def to_openai(self) -> dict[str, Any]:
        function = {"name": self.name, "arguments": self.arguments}
        return {"id": self.id, "type": "function", "function": function}

    @classmethod
    def from_pb(cls, pb: tokenizer_pb2.ToolCall) -> ToolCall:
        return cls(pb.index, pb.id, pb.name, pb.arguments)


@dataclass(frozen=True)
class GenerateChunk:
    """One streamed piece of a generation (new text and ids since the previous piece)."""

    rid: str
    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    index: int = 0  # which sample, when the request asked for n > 1
    tool_calls: list[ToolCall] = field(default_factory=list)  # chat with tools: call pieces
    # With top_logprobs: per token, the most likely tokens as {token id: logprob}.
    top_logprobs: list[dict[int, float]] = field(default_factory=list)

    @classmethod
    def from_pb(cls, pb: tokenizer_pb2.GenerateResponse) -> GenerateChunk:
        return cls(
            rid=pb.rid,
            text=pb.text,
            token_ids=list(pb.token_ids),
            logprobs=list(pb.logprobs),
            finish_reason=finish_reason_from_pb(pb.finish_reason),
            prompt_tokens=pb.usage.prompt_tokens,
            completion_tokens=pb.usage.completion_tokens,
            cached_tokens=pb.usage.cached_tokens,
            index=pb.index,
            tool_calls=[ToolCall.from_pb(c) for c in pb.tool_calls],
            top_logprobs=[dict(zip(t.token_ids, t.logprobs, strict=True)) for t in pb.top_logprobs],
        )


@dataclass
class Completion:
    """A whole generation, gathered from its chunks (with tools: ``text`` is the content and
    ``tool_calls`` the calls, ``finish_reason`` ``"tool_calls"`` when it made some).

    With ``n`` samples, ``choices`` holds one Completion per sample (by ``index``) and this one's
    fields are the first sample's; with one, ``choices`` is ``[self]``.
    """

    rid: str = ""
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    tool_calls: list[ToolCall] = field(default_factory=list)
    top_logprobs: list[dict[int, float]] = field(default_factory=list)
    index: int = 0
    choices: list[Completion] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def gather(cls, chunks: Iterable[GenerateChunk]) -> Completion:
        """The completion of a stream of chunks, its samples apart."""
        by_index: dict[int, Completion] = {}
        for chunk in chunks:
            by_index.setdefault(chunk.index, cls(index=chunk.index)).add(chunk)
        return cls.of(by_index)

    @classmethod
    def of(cls, by_index: dict[int, Completion]) -> Completion:
        """The first sample's completion, holding every sample's in ``choices``."""
        choices = [by_index[i] for i in sorted(by_index)] or [cls()]
        choices[0].choices = choices
        return choices[0]

    def add(self, chunk: GenerateChunk) -> None:
        """Adds a chunk of this sample (a stream of n samples: see :meth:`gather`)."""
        self.rid = chunk.rid or self.rid
        self.text += chunk.text
        self.token_ids += chunk.token_ids
        self.logprobs += chunk.logprobs
        self.top_logprobs += chunk.top_logprobs
        self.finish_reason = chunk.finish_reason or self.finish_reason
        self.prompt_tokens = chunk.prompt_tokens or self.prompt_tokens
        self.completion_tokens = chunk.completion_tokens or self.completion_tokens
        self.cached_tokens = chunk.cached_tokens or self.cached_tokens
        for piece in chunk.tool_calls:
            if piece.index == len(self.tool_calls):
                self.tool_calls.append(ToolCall(piece.index, piece.id, piece.name, ""))
            self.tool_calls[piece.index].arguments += piece.arguments

    def message(self) -> dict[str, Any]:
        """The answer as the assistant message of a next request (OpenAI's shape)."""
        out: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            out["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        return out


def _constraints_pb(pb: common_pb2.SamplingParams, sampling: dict[str, Any]) -> None:
    """Pops min_p, logit_bias and a grammar (json_schema, regex, ebnf, choice) into ``pb``."""
    if "min_p" in sampling:
        pb.min_p = sampling.pop("min_p")
    pb.logit_bias.update({int(k): v for k, v in sampling.pop("logit_bias", {}).items()})
    schema = sampling.pop("json_schema", None)
    if schema is not None:
        pb.json_schema = schema if isinstance(schema, str) else json.dumps(schema)
    for name in ("regex", "ebnf"):
        if name in sampling:
            setattr(pb, name, sampling.pop(name))
    if "choice" in sampling:
        pb.choice.values.extend(sampling.pop("choice"))


def sampling_pb(**sampling: Any) -> common_pb2.SamplingParams:
    """SamplingParams from keywords; unset (None) fields stay unset. TypeError on unknown keys."""
    sampling = {k: v for k, v in sampling.items() if v is not None}
    if "max_tokens" in sampling:
        sampling["max_new_tokens"] = sampling.pop("max_tokens")
    if "min_tokens" in sampling:
        sampling["min_new_tokens"] = sampling.pop("min_tokens")
    pb = common_pb2.SamplingParams()
    stop = sampling.pop("stop", [])
    pb.stop.extend([stop] if isinstance(stop, str) else stop)
    pb.stop_token_ids.extend(sampling.pop("stop_token_ids", []))
    if "max_new_tokens" in sampling:
        pb.max_new_tokens = sampling.pop("max_new_tokens")
    for name in _SCALARS:
        if name in sampling:
            setattr(pb, name, sampling.pop(name))
    _constraints_pb(pb, sampling)
    if sampling:
        raise TypeError(f"unknown sampling arguments: {', '.join(sorted(sampling))}")
    return pb


def generate_request(
    prompt: str | None = None,
    *,
    messages: Iterable[Message] | None = None,
    token_ids: Sequence[int] | None = None,
    rid: str = "",
    n: int | None = None,
    tools: Iterable[Mapping[str, Any]] | None = None,
    tool_choice: str | Mapping[str, Any] | None = None,
    parallel_tool_calls: bool | None = None,
    **sampling: Any,
) -> tokenizer_pb2.GenerateRequest:
    """A GenerateRequest from exactly one of ``prompt`` (text), ``messages`` or ``token_ids``;
    the tool arguments go with ``messages``."""
    given = [x is not None for x in (prompt, messages, token_ids)]
    if sum(given) != 1:
        raise ValueError("pass exactly one of prompt, messages or token_ids")
    with_tools = (tools, tool_choice, parallel_tool_calls)
    if messages is None and any(x is not None for x in with_tools):
        raise ValueError("tools, tool_choice and parallel_tool_calls need messages")
    req = tokenizer_pb2.GenerateRequest(rid=rid, sampling=sampling_pb(**sampling))
    if n is not None:
        req.n = n
    if prompt is not None:
        req.text = prompt
    elif messages is not None:
        # NOTE: CopyFrom of even an empty ChatInput still picks the chat input.
        req.chat.CopyFrom(chat_input_pb(messages, tools, tool_choice, parallel_tool_calls))
    else:
        req.token_ids.SetInParent()
        req.token_ids.ids.extend(token_ids or [])
    return req


def chat_messages(user: str, system: str | None = None) -> list[dict[str, str]]:
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": user}]
