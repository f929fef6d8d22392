"""OpenAI API shapes: request models (pydantic), sampling conversion and response bodies.

No I/O here: :mod:`services.tokenizer.http_api` parses requests with these models, turns them into
:class:`SamplingParams` with :func:`sampling_params` and answers with the dicts built below.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.common.errors import InvalidArgument
from services.common.pbconv import MAX_TOP_LOGPROBS
from services.common.types import SamplingParams, TopLogprobs
from services.tokenizer.manager import Chunk
from services.tokenizer.samples import check_n
from services.tokenizer.tokenization import Tokenizer

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
FINISH_REASONS = ("stop", "length", "abort")


class StreamOptions(BaseModel):
    include_usage: bool = False


class _SamplingRequest(BaseModel):
    """Fields both endpoints share. Unknown fields are ignored, as OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # extension
    seed: int | None = Field(default=None, ge=0, lt=2**64)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # Extensions, as vLLM has them.
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool = False
    min_tokens: int = 0
    repetition_penalty: float | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_SamplingRequest):
    messages: list[dict[str, Any]]
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None


class CompletionRequest(_SamplingRequest):
    prompt: str | list[int] | list[str] | list[list[int]]
    logprobs: int | None = None
    echo: bool = False
    suffix: str | None = None


def check_unsupported(req: _SamplingRequest) -> None:
    """Rejects what this server cannot do, naming the field (rather than silently ignoring it)."""
    check_n(req.n)
    if req.logit_bias:
        raise InvalidArgument("is not supported", "logit_bias")
    if isinstance(req, CompletionRequest):
        if req.echo:
            raise InvalidArgument("is not supported", "echo")
        if req.suffix:
            raise InvalidArgument("is not supported", "suffix")


def sampling_params(req: _SamplingRequest, max_context_len: int) -> tuple[SamplingParams, bool]:
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

    def usage_chunk(self, totals: list[Chunk], prompt_len: int) -> dict[str, Any]:
        return {**self.envelope(self.chunk_object, []), "usage": self.usage(totals, prompt_len)}

    def response(self, totals: list[Chunk], prompt_len: int) -> dict[str, Any]:
        """The whole answer; ``totals`` has one merged chunk per sample, by index."""
        body = self.envelope(self.object_name, [self.full(t) for t in totals])
        return {**body, "usage": self.usage(totals, prompt_len)}

    @staticmethod
    def usage(totals: list[Chunk], prompt_len: int) -> dict[str, Any]:
        """The prompt counts once, completions add up; cached: the best reuse of one sample."""
        completion = sum(t.completion_tokens or len(t.token_ids) for t in totals)
        prompt = max((t.prompt_tokens for t in totals), default=0) or prompt_len
        return usage(prompt, completion, max((t.cached_tokens for t in totals), default=0))

    def delta(self, chunk: Chunk) -> dict[str, Any] | None:
        if (
            not chunk.text
            and chunk.finish_reason is None
            and not (self.logprobs and chunk.logprobs)
        ):
            return None
        return self.full(chunk)

    def full(self, chunk: Chunk) -> dict[str, Any]:
        return {
            "index": chunk.index,
            "text": chunk.text,
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
        if not chunk.text and chunk.finish_reason is None and not chunk.logprobs:
            return None
        return {
            "index": chunk.index,
            "delta": {"content": chunk.text} if chunk.text else {},
            "logprobs": self.token_logprobs(chunk) if self.logprobs else None,
            "finish_reason": finish_reason(chunk),
        }

    def full(self, chunk: Chunk) -> dict[str, Any]:
        return {
            "index": chunk.index,
            "message": {"role": "assistant", "content": chunk.text},
            "logprobs": self.token_logprobs(chunk) if self.logprobs else None,
            "finish_reason": finish_reason(chunk),
        }

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
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}
