"""OpenAI API request bodies (pydantic): strict scalars, unknown fields refused, valid Unicode.

Shapes only: :mod:`.sampling` reads a body into sampling parameters and the serving modules
answer it.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from radixserve.common.errors import InvalidArgument

logger = logging.getLogger(__name__)

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


class SamplingRequest(_Model):
    """Fields both endpoints share.

    Unknown top-level fields are refused with a 400 naming them, as OpenAI does. Accepted vendor
    extensions (vLLM / SGLang names): ``top_k``, ``min_p``, ``ignore_eos``, ``skip_special_tokens``,
    ``stop_token_ids``, ``include_stop_str_in_output``, ``min_tokens``, ``repetition_penalty``,
    and the grammar constraints ``regex``, ``ebnf``, ``choice`` and ``json_schema``.
    """

    model: str | None = None
    max_tokens: Int | None = None
    temperature: Annotated[float, Strict(), Field(ge=0, le=2)] | None = None  # OpenAI's range
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
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
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


class ChatCompletionRequest(SamplingRequest):
    messages: list[dict[str, Any]]
    max_completion_tokens: Int | None = None
    logprobs: Bool = False
    top_logprobs: Int | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: Bool | None = None


class CompletionRequest(SamplingRequest):
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
    # As chat has them, so the count is the one chat uses (tools in the prompt, calls rendered).
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: Bool | None = None


class DetokenizeRequest(_Model):
    model: str | None = None
    tokens: list[Int]
