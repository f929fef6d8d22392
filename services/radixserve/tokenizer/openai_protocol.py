"""OpenAI API shapes: request models (pydantic), sampling conversion and response bodies.

No I/O here: :mod:`services.tokenizer.http_api` parses requests with these models, turns them into
:class:`SamplingParams` with :func:`sampling_params` and answers with the dicts built below.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from radixserve.common.errors import InvalidArgument
from radixserve.common.types import (
    MAX_TOP_LOGPROBS,
    Constraint,
    SamplingParams,
    TopLogprobs,
)
from radixserve.common.vocab.loading import Tokenizer
from radixserve.common.vocab.token_bytes import token_bytes
from radixserve.tokenizer.manager import Chunk
from radixserve.tokenizer.samples import check_n
from radixserve.tokenizer.tool_stream import ChoiceStreams

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
FINISH_REASONS = ("stop", "length", "abort")


# Strict scalars: JSON true is not 1, "1" is not 1, and 1e999 (inf) or NaN is no float.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="after")
    def _no_surrogates(self) -> _Model:
        # NOTE: JSON may spell a lone surrogate ("\\ud800"); no tokenizer can encode it.
        field = _surrogate_field(self.__dict__, "")
        if field is not None:
            raise InvalidArgument("is not valid Unicode (a lone surrogate)", field)
        return self


class StreamOptions(_Model):
    include_usage: Bool = False


class JsonSchemaFormat(_Model):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: Bool | None = None


class ResponseFormat(_Model):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class _SamplingRequest(_Model):
    """Fields both endpoints share.

    Unknown top-level fields are refused with a 400 naming them, as OpenAI does. Accepted vendor
    extensions (vLLM / SGLang names): ``top_k``, ``min_p``, ``ignore_eos``, ``skip_special_tokens``,
    ``stop_token_ids``, ``include_stop_str_in_output``, ``min_tokens``, ``repetition_penalty``,
    and the grammar constraints ``regex``, ``ebnf``, ``choice`` and ``json_schema``.
    """

    model: str | None = None
    max_tokens: Int | None = None
    temperature: Float | None = None
    top_p: Float | None = None
    seed: Int | None = Field(default=None, ge=0, lt=2**64)
    stop: str | list[str] | None = None
    stream: Bool = False
    stream_options: StreamOptions | None = None
    n: Int = 1
    presence_penalty: Float | None = None
    frequency_penalty: Float | None = None
    logit_bias: dict[str, Float] | None = None
    # Accepted, no effect on the output (OpenAI bookkeeping fields).
    user: str | None = None
    store: Bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # Extensions, as vLLM and SGLang have them.
    top_k: Int | None = None
    min_p: Float | None = None
    ignore_eos: Bool = False
    skip_special_tokens: Bool = True
    stop_token_ids: list[Int] | None = None
    include_stop_str_in_output: Bool = False
    min_tokens: Int = 0
    repetition_penalty: Float | None = None
    regex: str | None = None
    ebnf: str | None = None
    choice: list[str] | None = None
    json_schema: dict[str, Any] | str | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


def _surrogate_field(value: Any, where: str) -> str | None:
    """The path of the first string holding a lone UTF-16 surrogate (JSON ``"\\ud800"``)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "body"
        return None
    if isinstance(value, BaseModel):
        value = value.__dict__
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for key, item in items:
        key = str(key)
        path = f"{where}{key}" if key.startswith("[") else f"{where}.{key}" if where else key
        found = _surrogate_field(key, path) or _surrogate_field(item, path)
        if found is not None:
            return found
    return None


class ChatCompletionRequest(_SamplingRequest):
    messages: list[dict[str, Any]]
    max_completion_tokens: Int | None = None
    logprobs: Bool = False
    top_logprobs: Int | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: Bool | None = None


class CompletionRequest(_SamplingRequest):
    prompt: str | list[Int] | list[str] | list[list[Int]]
    logprobs: Int | None = None
    echo: Bool = False
    suffix: str | None = None
    best_of: Int | None = None


class TokenizeRequest(_Model):
    """``POST /tokenize`` (as vLLM and SGLang have it): a prompt, or chat messages."""

    model: str | None = None
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    add_special_tokens: Bool = True
    add_generation_prompt: Bool = True


class DetokenizeRequest(_Model):
    model: str | None = None
    tokens: list[Int]


def check_unsupported(req: _SamplingRequest) -> None:
    """Rejects what this server cannot do, naming the field (rather than silently ignoring it)."""
    check_n(req.n)
    if req.stream_options is not None and not req.stream:
        raise InvalidArgument("is only allowed when stream is true", "stream_options")
    if isinstance(req, CompletionRequest):
        if req.echo and req.logprobs is not None:
            raise InvalidArgument("with logprobs is not supported (no prompt logprobs)", "echo")
        if req.suffix:
            raise InvalidArgument("is not supported (no fill-in-the-middle model)", "suffix")
        if req.best_of is not None and req.best_of != req.n:
            raise InvalidArgument("must equal n (no server-side ranking)", "best_of")


def constraint(req: _SamplingRequest) -> tuple[Constraint | None, str | None]:
    """The request's grammar constraint and the field that set it; 400 when several are set."""
    found: list[tuple[Constraint, str]] = []
    fmt = getattr(req, "response_format", None)
    if fmt is not None and fmt.type == "json_object":
        found.append((Constraint("json_schema", '{"type": "object"}'), "response_format"))
    elif fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None or fmt.json_schema.schema_ is None:
            raise InvalidArgument("needs json_schema.schema", "response_format")
        schema = json.dumps(fmt.json_schema.schema_)
        found.append((Constraint("json_schema", schema), "response_format.json_schema"))
    if req.json_schema is not None:
        text = req.json_schema if isinstance(req.json_schema, str) else json.dumps(req.json_schema)
        found.append((Constraint("json_schema", text), "json_schema"))
    if req.regex is not None:
        found.append((Constraint("regex", req.regex), "regex"))
    if req.ebnf is not None:
        found.append((Constraint("ebnf", req.ebnf), "ebnf"))
    if req.choice is not None:
        if not req.choice:
            raise InvalidArgument("must list at least one string", "choice")
        found.append((Constraint("choice", json.dumps(req.choice)), "choice"))
    if len(found) > 1:
        raise InvalidArgument(f"only one constraint at a time, got {[f for _, f in found]}")
    return found[0] if found else (None, None)


def logit_bias(req: _SamplingRequest, vocab_size: int) -> tuple[tuple[int, float], ...]:
    """OpenAI's ``{"token id": bias}`` as sorted pairs; 400 naming the bad key or value."""
    pairs = []
    for key, bias in (req.logit_bias or {}).items():
        if not key.isdigit() or int(key) >= vocab_size:
            message = f"key {key!r} is not a token id in [0, {vocab_size})"
            raise InvalidArgument(message, "logit_bias")
        if not -100.0 <= bias <= 100.0:
            message = f"bias of {key} must be in [-100, 100], got {bias}"
            raise InvalidArgument(message, "logit_bias")
        pairs.append((int(key), bias))
    return tuple(sorted(pairs))


def sampling_params(
    req: _SamplingRequest, max_context_len: int, vocab_size: int = 2**31 - 1
) -> tuple[SamplingParams, bool]:
    """The request's sampling and whether max_tokens was given (else it is cut to the context)."""
    check_unsupported(req)
    max_field, max_tokens = "max_tokens", req.max_tokens
    if isinstance(req, ChatCompletionRequest) and req.max_completion_tokens is not None:
        max_field, max_tokens = "max_completion_tokens", req.max_completion_tokens
    given = max_tokens is not None
    if max_tokens is None:
        is_chat = isinstance(req, ChatCompletionRequest)
        max_tokens = max_context_len if is_chat else COMPLETIONS_DEFAULT_MAX_TOKENS
    elif max_tokens < 1:
        raise InvalidArgument(f"must be >= 1, got {max_tokens}", max_field)
    stop_ids = req.stop_token_ids or []
    if any(t < 0 for t in stop_ids):
        raise InvalidArgument("token ids must be >= 0", "stop_token_ids")
    if not 0 <= req.min_tokens <= max_tokens:
        raise InvalidArgument(f"must be in [0, {max_field}={max_tokens}]", "min_tokens")
    logprobs, top = _logprobs(req)
    sampling = SamplingParams(
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=-1 if req.top_k is None else req.top_k,
        seed=req.seed,
        max_new_tokens=max_tokens,
        stop_token_ids=tuple(stop_ids),
        ignore_eos=req.ignore_eos,
        logprobs=logprobs,
        min_new_tokens=req.min_tokens,
        frequency_penalty=req.frequency_penalty or 0.0,
        presence_penalty=req.presence_penalty or 0.0,
        repetition_penalty=1.0 if req.repetition_penalty is None else req.repetition_penalty,
        top_logprobs=top,
        min_p=req.min_p or 0.0,
        logit_bias=logit_bias(req, vocab_size),
        constraint=constraint(req)[0],
    )
    return sampling, given


def _logprobs(req: _SamplingRequest) -> tuple[bool, int]:
    """(logprobs wanted, top count): chat has logprobs + top_logprobs, completions an int."""
    if isinstance(req, ChatCompletionRequest):
        name, top = "top_logprobs", req.top_logprobs or 0
        if top and not req.logprobs:
            raise InvalidArgument("needs logprobs to be true", name)
        wanted = req.logprobs
    else:
        name, top = "logprobs", req.logprobs or 0
        wanted = req.logprobs is not None
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        raise InvalidArgument(f"must be in [0, {MAX_TOP_LOGPROBS}], got {top}", name)
    return wanted, top


def stop_strings(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


# ---- responses -------------------------------------------------------------------------------


def error_body(
    message: str, param: str | None = None, kind: str = "invalid_request_error", code: Any = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def dumps(payload: Any) -> str:
    """Compact JSON, as every response body and SSE event is encoded."""
    return _ENCODER.encode(payload)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_dump_str = _ENCODER.encode  # a str alone: the C encoder, no dict walk


def sse(payload: dict[str, Any]) -> str:
    """One SSE event of ``payload``."""
    return f"data: {dumps(payload)}\n\n"


def finish_reason(chunk: Chunk) -> str | None:
    reason = chunk.finish_reason
    return reason if reason in FINISH_REASONS or reason is None else "abort"


class Format:
    """Response shapes of one endpoint, for one request (ids, creation time, logprob offsets)."""

    id_prefix = "cmpl"
    object_name = "text_completion"
    chunk_object = "text_completion"

    def __init__(self, model: str, tokenizer: Tokenizer, logprobs: bool, top: int = 0) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.logprobs = logprobs
        self.top = top  # top logprobs per position
        self.id = new_id(self.id_prefix)
        self.created = now()
        self.per_prompt = 1  # choices per prompt (n); a batch of prompts has several groups
        self.echo: list[str] = []  # completions with echo: each prompt's text
        self.tool_parser: Any = None  # chat with tools: a tool_calls.ToolParser
        self._echoed: set[int] = set()
        self._streams: ChoiceStreams | None = None  # chat with tools, streamed
        self._text_offset: dict[int, int] = {}  # per sample: characters of tokens already sent

    def envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def head(self, with_usage: bool, n: int = 1) -> list[dict[str, Any]]:
        """Stream events sent before the first chunk."""
        return []

    def chunk(self, chunk: Chunk, with_usage: bool) -> dict[str, Any] | None:
        """The stream event of ``chunk``; None when it carries nothing to tell."""
        choice = self.delta(chunk)
        if choice is None:
            return None
        event = self.envelope(self.chunk_object, [choice])
        if with_usage:
            event["usage"] = None
        return event

    def event(self, chunk: Chunk, with_usage: bool) -> str | None:
        """``sse(self.chunk(chunk, with_usage))``, byte for byte, built faster: the envelope is
        encoded once per stream and a plain text delta (the per-token case) from a template."""
        text = self._plain(chunk)
        if text is not None:
            choice = self._plain_choice % (chunk.index, _dump_str(text))
        else:
            delta = self.delta(chunk)
            if delta is None:
                return None
            choice = dumps(delta)
        return self._event_head + choice + (self._tail_usage if with_usage else self._tail)

    # NOTE: the templates below must encode exactly as dumps() of chunk()'s dicts (key order too);
    # tests/services/test_sse_events.py compares them.
    _plain_choice = '{"index":%d,"text":%s,"logprobs":null,"finish_reason":null}'
    _tail = "]}\n\n"
    _tail_usage = '],"usage":null}\n\n'

    @functools.cached_property
    def _event_head(self) -> str:
        whole = dumps(self.envelope(self.chunk_object, []))  # ...,"choices":[]}
        return "data: " + whole[: -len("]}")]

    def _plain(self, chunk: Chunk) -> str | None:
        """The text of a chunk that is text and nothing else (no logprobs, echo or finish)."""
        if chunk.finish_reason is not None or not chunk.text or self.logprobs or self.echo:
            return None
        return chunk.text

    def usage_chunk(self, totals: list[Chunk], prompt_len: int) -> dict[str, Any]:
        return {**self.envelope(self.chunk_object, []), "usage": self.usage(totals, prompt_len)}

    def response(self, totals: list[Chunk], prompt_len: int) -> dict[str, Any]:
        """The whole answer; ``totals`` has one merged chunk per sample, by index."""
        body = self.envelope(self.object_name, [self.full(t) for t in totals])
        return {**body, "usage": self.usage(totals, prompt_len)}

    def usage(self, totals: list[Chunk], prompt_len: int) -> dict[str, Any]:
        """Each prompt counts once, completions add up; cached: the best reuse of each prompt."""
        completion = sum(t.completion_tokens or len(t.token_ids) for t in totals)
        k = max(self.per_prompt, 1)
        groups = [totals[i : i + k] for i in range(0, len(totals), k)]
        prompt = sum(max((t.prompt_tokens for t in g), default=0) for g in groups) or prompt_len
        cached = sum(max((t.cached_tokens for t in g), default=0) for g in groups)
        return usage(prompt, completion, cached)

    def _text(self, chunk: Chunk) -> str:
        """The chunk's text, after the prompt's with echo (once per choice)."""
        if not self.echo or chunk.index in self._echoed:
            return chunk.text
        self._echoed.add(chunk.index)
        return self.echo[chunk.index // max(self.per_prompt, 1)] + chunk.text

    def delta(self, chunk: Chunk) -> dict[str, Any] | None:
        if (
            not chunk.text
            and chunk.finish_reason is None
            and not (self.logprobs and chunk.logprobs)
            and not (self.echo and chunk.index not in self._echoed)
        ):
            return None
        return self.full(chunk)

    def full(self, chunk: Chunk) -> dict[str, Any]:
        return {
            "index": chunk.index,
            "text": self._text(chunk),
            "logprobs": self.token_logprobs(chunk) if self.logprobs else None,
            "finish_reason": finish_reason(chunk),
        }

    def token_str(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def token_logprobs(self, chunk: Chunk) -> dict[str, Any]:
        tokens = [self.token_str(t) for t in chunk.token_ids[: len(chunk.logprobs)]]
        offsets, offset = [], self._text_offset.get(chunk.index, 0)
        for token in tokens:
            offsets.append(offset)
            offset += len(token)
        self._text_offset[chunk.index] = offset
        top = None
        if self.top:
            top = [self._top_dict(t) for t in chunk.top_logprobs[: len(tokens)]]
        return {
            "tokens": tokens,
            "token_logprobs": list(chunk.logprobs),
            "top_logprobs": top,
            "text_offset": offsets,
        }

    def _top_dict(self, top: TopLogprobs) -> dict[str, float]:
        out: dict[str, float] = {}
        for token_id, logprob in zip(top.token_ids, top.logprobs, strict=True):
            out.setdefault(self.token_str(token_id), logprob)  # distinct ids may spell alike
        return out


CompletionFormat = Format


class ChatFormat(Format):
    id_prefix = "chatcmpl"
    object_name = "chat.completion"
    chunk_object = "chat.completion.chunk"
    _plain_choice = '{"index":%d,"delta":{"content":%s},"logprobs":null,"finish_reason":null}'

    def _plain(self, chunk: Chunk) -> str | None:
        return None if self.tool_parser is not None else super()._plain(chunk)

    def head(self, with_usage: bool, n: int = 1) -> list[dict[str, Any]]:
        events = []
        for i in range(n):
            delta = {"role": "assistant", "content": ""}
            choice = {"index": i, "delta": delta, "logprobs": None, "finish_reason": None}
            event = self.envelope(self.chunk_object, [choice])
            if with_usage:
                event["usage"] = None
            events.append(event)
        return events

    def delta(self, chunk: Chunk) -> dict[str, Any] | None:
        if self.tool_parser is not None:
            return self._tool_delta(chunk)
        if not chunk.text and chunk.finish_reason is None and not chunk.logprobs:
            return None
        return {
            "index": chunk.index,
            "delta": {"content": chunk.text} if chunk.text else {},
            "logprobs": self.token_logprobs(chunk) if self.logprobs else None,
            "finish_reason": finish_reason(chunk),
        }

    def full(self, chunk: Chunk) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": chunk.text}
        reason = finish_reason(chunk)
        if self.tool_parser is not None:
            content, calls = self.tool_parser.parse(chunk.text)
            if calls:
                message = {"role": "assistant", "content": content or None, "tool_calls": calls}
                reason = "tool_calls" if reason == "stop" else reason
        return {
            "index": chunk.index,
            "message": message,
            "logprobs": self.token_logprobs(chunk) if self.logprobs else None,
            "finish_reason": reason,
        }

    def _tool_delta(self, chunk: Chunk) -> dict[str, Any] | None:
        """With tools, text streams as content up to what may be a tool call; then each call
        streams as OpenAI's do: a first delta with its index, id, name and the arguments so far,
        then the arguments piece by piece (``tool_stream.ToolStream``)."""
        if self._streams is None:
            self._streams = ChoiceStreams(self.tool_parser)
        out, reason = self._streams.feed(chunk.index, chunk.text, finish_reason(chunk))
        if not out.content and not out.tool_calls and reason is None:
            return None
        delta: dict[str, Any] = {"content": out.content} if out.content else {}
        if out.tool_calls:
            delta["tool_calls"] = out.tool_calls
        return {"index": chunk.index, "delta": delta, "logprobs": None, "finish_reason": reason}

    def token_logprobs(self, chunk: Chunk) -> dict[str, Any]:
        content = []
        tops = chunk.top_logprobs if self.top else []
        for i, (token_id, logprob) in enumerate(zip(chunk.token_ids, chunk.logprobs, strict=False)):
            top = tops[i] if i < len(tops) else None
            alternatives = (
                [self._entry(t, lp) for t, lp in zip(top.token_ids, top.logprobs, strict=True)]
                if top is not None
                else []
            )
            content.append({**self._entry(token_id, logprob), "top_logprobs": alternatives})
        return {"content": content}

    def _entry(self, token_id: int, logprob: float) -> dict[str, Any]:
        token = self.token_str(token_id)
        raw = token_bytes(self.tokenizer, [token_id])[0]  # its own bytes, not U+FFFD's
        return {"token": token, "logprob": logprob, "bytes": list(raw)}
