"""Builds scheduler requests from what a client sent: prompt ids, bounded lengths, validation.

No grpc and no HTTP here: both front ends (gRPC and the OpenAI API) call :class:`PromptBuilder`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from radixserve.common.errors import InvalidArgument
from radixserve.common.grammars import check_constraint
from radixserve.common.types import ModelInfo, SamplingParams, validate_sampling
from radixserve.common.vocab.loading import Tokenizer
from radixserve.tokenizer.chat_template import render_chat_for


def new_rid() -> str:
    # NOTE: unguessable (128 random bits), so that no client can name another's request.
    return secrets.token_hex(16)


@dataclass(frozen=True)
class GenerateInput:
    """One generation as the tokenizer service runs it."""

    rid: str
    input_ids: list[int]
    sampling: SamplingParams
    stop: tuple[str, ...] = ()
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    priority: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class ContextLengthExceeded(InvalidArgument):
    """The prompt, or it and max_tokens, do not fit the context (OpenAI's error code below)."""

    openai_code = "context_length_exceeded"


class PromptBuilder:
    """Turns text, chat messages or ids plus sampling into a validated :class:`GenerateInput`."""

    def __init__(self, tokenizer: Tokenizer, info: ModelInfo) -> None:
        self.tokenizer = tokenizer
        self.info = info

    def ids_from_text(self, text: str, field_name: str = "prompt") -> list[int]:
        if not isinstance(text, str) or not text:
            raise InvalidArgument("must be a non-empty string", field_name)
        return self.tokenizer.encode(text, add_special_tokens=True)

    def ids_from_chat(
        self,
        messages: Any,
        field_name: str = "messages",
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
    ) -> list[int]:
        if not isinstance(messages, list) or not messages:
            raise InvalidArgument("must be a non-empty list of messages", field_name)
        try:
            text = render_chat_for(
                self.tokenizer, messages, add_generation_prompt=add_generation_prompt, tools=tools
            )
        except ValueError as exc:  # bad messages or a template that refused them
            message = str(exc)
            head, sep, rest = message.partition(": ")
            if sep and head.startswith(field_name) and " " not in head:  # "messages[0].role: ..."
                raise InvalidArgument(rest, head) from exc
            raise InvalidArgument(message) from exc
        # The template writes BOS itself where the model wants one.
        return self.tokenizer.encode(text, add_special_tokens=False)

    def check_ids(self, ids: Sequence[int], field_name: str = "prompt") -> list[int]:
        ids = list(ids)
        if not ids:
            raise InvalidArgument("must not be empty", field_name)
        vocab = self.info.vocab_size
        bad = next((t for t in ids if not isinstance(t, int) or t < 0 or t >= vocab), None)
        if bad is not None:
            raise InvalidArgument(f"token id {bad!r} outside [0, {vocab})", field_name)
        return ids

    def build(
        self,
        ids: Sequence[int],
        sampling: SamplingParams,
        *,
        rid: str = "",
        stop: Sequence[str] = (),
        max_tokens_given: bool = True,
        field_name: str = "prompt",
        **options: Any,
    ) -> GenerateInput:
        """Validates lengths and sampling. An unset max_tokens is cut to fit the context."""
        ids = self.check_ids(ids, field_name)
        validate_sampling(sampling)
        if sampling.constraint is not None:
            check_constraint(sampling.constraint)
        vocab = self.info.vocab_size
        bad = next((t for t, _ in sampling.logit_bias if not 0 <= t < vocab), None)
        if bad is not None:  # NOTE: the HTTP API checks it too; the gRPC API only here
            raise InvalidArgument(f"key {bad} is not a token id in [0, {vocab})", "logit_bias")
        room = self.info.max_context_len - len(ids)
        if room < 1:
            raise ContextLengthExceeded(
                f"{len(ids)} tokens, longer than the context ({self.info.max_context_len})",
                field_name,
            )
        if sampling.max_new_tokens > room:
            if max_tokens_given:
                raise ContextLengthExceeded(
                    f"{sampling.max_new_tokens} + {len(ids)} prompt tokens exceed the context "
                    f"({self.info.max_context_len})",
                    "max_tokens",
                )
            sampling = replace(sampling, max_new_tokens=room)
        if not sampling.ignore_eos:
            # The tokenizer knows end-of-turn tokens (e.g. <|im_end|>, <|eot_id|>) that a model
            # config may not list as EOS; they end the request like EOS does.
            extra = [t for t in self.tokenizer.eos_token_ids if t not in sampling.stop_token_ids]
            if extra:
                sampling = replace(sampling, stop_token_ids=(*sampling.stop_token_ids, *extra))
        stops = tuple(stop)
        if any(not isinstance(s, str) or not s for s in stops):
            raise InvalidArgument("stop strings must be non-empty strings", "stop")
        return GenerateInput(rid or new_rid(), ids, sampling, stops, **options)
