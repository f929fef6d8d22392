"""An OpenAI request body as :class:`SamplingParams`: what the engine is to do, or a 400 naming
the field it cannot do.

Unset fields take :class:`SamplingParams`' own defaults, which are the only ones; only
``max_tokens`` differs by endpoint (OpenAI's 16 for completions, the room left in the context for
chat).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from radixserve.common.errors import InvalidArgument
from radixserve.common.types import MAX_TOP_LOGPROBS, Constraint, SamplingParams
from radixserve.tokenizer.openai.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    SamplingRequest,
)
from radixserve.tokenizer.samples import check_n

logger = logging.getLogger(__name__)

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


def check_unsupported(req: SamplingRequest) -> None:
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


def constraint(req: SamplingRequest) -> tuple[Constraint | None, str | None]:
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


def logit_bias(req: SamplingRequest, vocab_size: int) -> tuple[tuple[int, float], ...]:
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
    req: SamplingRequest, max_context_len: int, vocab_size: int = 2**31 - 1
) -> tuple[SamplingParams, bool]:
    """The request's sampling and whether max_tokens was given (else it is cut to the context)."""
    check_unsupported(req)
    max_field, max_tokens, given = _max_tokens(req, max_context_len)
    stop_ids = req.stop_token_ids or []
    if any(t < 0 for t in stop_ids):
        raise InvalidArgument("token ids must be >= 0", "stop_token_ids")
    if not 0 <= req.min_tokens <= max_tokens:
        raise InvalidArgument(f"must be in [0, {max_field}={max_tokens}]", "min_tokens")
    logprobs, top = _logprobs(req)
    sampling = SamplingParams(
        **_given(req),
        seed=req.seed,
        max_new_tokens=max_tokens,
        stop_token_ids=tuple(stop_ids),
        ignore_eos=req.ignore_eos,
        logprobs=logprobs,
        min_new_tokens=req.min_tokens,
        top_logprobs=top,
        logit_bias=logit_bias(req, vocab_size),
        constraint=constraint(req)[0],
    )
    return sampling, given


def _given(req: SamplingRequest) -> dict[str, Any]:
    """The optional sampling fields the client set; the others keep SamplingParams' defaults."""
    fields = {
        "temperature": req.temperature,
        "top_p": req.top_p,
        "top_k": req.top_k,
        "repetition_penalty": req.repetition_penalty,
        # NOTE: ``or None``: a -0.0 takes the default 0.0, as it always did.
        "frequency_penalty": req.frequency_penalty or None,
        "presence_penalty": req.presence_penalty or None,
        "min_p": req.min_p or None,
    }
    return {name: value for name, value in fields.items() if value is not None}


def _max_tokens(req: SamplingRequest, max_context_len: int) -> tuple[str, int, bool]:
    """(the field's name, max_tokens, whether the client set it): an unset one is the endpoint's
    default, chat's the whole context (the prompt builder cuts it to the room left)."""
    field, value = "max_tokens", req.max_tokens
    if isinstance(req, ChatCompletionRequest) and req.max_completion_tokens is not None:
        field, value = "max_completion_tokens", req.max_completion_tokens
    if value is None:
        is_chat = isinstance(req, ChatCompletionRequest)
        return field, max_context_len if is_chat else COMPLETIONS_DEFAULT_MAX_TOKENS, False
    if value < 1:
        raise InvalidArgument(f"must be >= 1, got {value}", field)
    return field, value, True


def _logprobs(req: SamplingRequest) -> tuple[bool, int]:
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
