"""Issue 25 on the embedded SmolLM2, through the real `openai` client and the gRPC SDK, streamed
and not: forced calls cut by max_tokens, bounded call grammars, placeholder keys, logprobs with
tools, /tokenize with tools, the SDK's samples and the small checks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import httpx
import openai
import pytest

from radixserve.client.sdk import AsyncRadixClient, RadixClient
from tests.stack import Stack

EMAIL = {
    "type": "function",
    "function": {
        "name": "send_email",
        "description": "Send an email",
        "parameters": {
            "type": "object",
            "properties": {
                "to": {"type": "string"},
                "subject": {"type": "string"},
                "body": {"type": "string"},
            },
            "required": ["to", "subject", "body"],
        },
    },
}
PRICE = {
    "type": "function",
    "function": {
        "name": "get_price",
        "description": "The price of a stock",
        "parameters": {
            "type": "object",
            "properties": {"ticker": {"type": "string"}},
            "required": ["ticker"],
        },
    },
}
NO_PARAMS = {"type": "function", "function": {"name": "get_time", "description": "Current time"}}
MAIL = [{"role": "user", "content": "Email bob@example.com that the meeting moved to 3pm."}]
MSFT = [{"role": "user", "content": "Check the price of MSFT."}]
NAMED = {"type": "function", "function": {"name": "send_email"}}


def _stream(oai: openai.OpenAI, **kw: Any) -> tuple[str, list[dict[str, Any]], str | None, int]:
    """Content, calls, finish_reason and the logprob entries of a streamed chat."""
    content, calls, reason, logprobs = "", [], None, 0
    for ev in oai.chat.completions.create(**kw, stream=True):
        if not ev.choices:
            continue
        choice = ev.choices[0]
        content += choice.delta.content or ""
        for d in choice.delta.tool_calls or []:
            if d.index == len(calls):
                calls.append({"name": d.function.name, "arguments": ""})
            calls[d.index]["arguments"] += d.function.arguments or ""
        if choice.logprobs is not None:
            logprobs += len(choice.logprobs.content or [])
        reason = choice.finish_reason or reason
    return content, calls, reason, logprobs


def _whole(oai: openai.OpenAI, **kw: Any) -> tuple[str, list[dict[str, Any]], str | None, int]:
    out = oai.chat.completions.create(**kw).choices[0]
    calls = [
        {"name": c.function.name, "arguments": c.function.arguments}
        for c in out.message.tool_calls or []
    ]
    logprobs = len(out.logprobs.content or []) if out.logprobs is not None else 0
    return out.message.content or "", calls, out.finish_reason, logprobs


@pytest.mark.parametrize("max_tokens", [3, 12, 20])
def test_forced_call_cut_by_max_tokens_agrees_and_leaks_no_markup(
    stack: Stack, oai: openai.OpenAI, model_name: str, max_tokens: int
) -> None:
    kw = {"model": model_name, "messages": MAIL, "tools": [EMAIL], "tool_choice": NAMED}
    kw.update(max_tokens=max_tokens, temperature=0)
    whole = _whole(oai, **kw)
    streamed = _stream(oai, **kw)
    # Cut: finish_reason length, no content, the call (once named) with its partial arguments.
    assert whole[2] == streamed[2] == "length"
    assert whole[0] == streamed[0] == ""
    assert whole[1] == streamed[1]
    assert all(c["name"] == "send_email" for c in whole[1])
    with RadixClient(stack.tokenizer_address) as client:
        out = client.chat(MAIL, tools=[EMAIL], tool_choice="send_email", max_tokens=max_tokens,
                          temperature=0)  # fmt: skip
    assert out.finish_reason == "length" and out.text == ""
    assert [{"name": c.name, "arguments": c.arguments} for c in out.tool_calls] == whole[1]


@pytest.mark.parametrize("stream", [False, True])
def test_required_makes_one_call_per_tool_at_most(
    oai: openai.OpenAI, model_name: str, stream: bool
) -> None:
    kw = {"model": model_name, "messages": MSFT, "tools": [PRICE], "tool_choice": "required"}
    kw.update(max_tokens=100, temperature=0)
    content, calls, reason, _ = (_stream if stream else _whole)(oai, **kw)
    assert reason == "tool_calls" and len(calls) == 1 and content == ""
    assert set(json.loads(calls[0]["arguments"])) == {"ticker"}


def test_parallel_false_under_auto_returns_one_call(oai: openai.OpenAI, model_name: str) -> None:
    ask = [{"role": "user", "content": "Price of MSFT and of AAPL?"}]
    kw = {"model": model_name, "messages": ask, "tools": [PRICE], "parallel_tool_calls": False}
    kw.update(max_tokens=80, temperature=0)
    for answer in (_whole(oai, **kw), _stream(oai, **kw)):
        assert len(answer[1]) <= 1 and "<tool_call>" not in answer[0]


def test_call_arguments_are_compact_json(oai: openai.OpenAI, model_name: str) -> None:
    kw = {"model": model_name, "messages": MAIL, "tools": [EMAIL], "tool_choice": NAMED}
    for seed in range(4):
        _, calls, reason, _ = _whole(oai, **kw, max_tokens=128, temperature=1.0, seed=seed)
        if reason != "tool_calls":
            continue
        args = calls[0]["arguments"]
        assert args == json.dumps(json.loads(args), ensure_ascii=False)  # ", " and ": " only


def test_number_is_bounded(oai: openai.OpenAI, model_name: str) -> None:
    schema = {"type": "object", "properties": {"value": {"type": "number"}}, "required": ["value"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "v", "schema": schema}}
    ask = [{"role": "user", "content": "Give me a precise value of pi."}]
    out = oai.chat.completions.create(
        model=model_name, messages=ask, response_format=fmt, max_tokens=60, temperature=0
    )
    assert out.choices[0].finish_reason == "stop"
    value = json.loads(out.choices[0].message.content)["value"]
    assert abs(value) <= 10**15 and len(repr(value).split(".")[-1]) <= 6


@pytest.mark.parametrize("stream", [False, True])
def test_tool_without_parameters_gets_no_placeholder_keys(
    stack: Stack, oai: openai.OpenAI, model_name: str, stream: bool
) -> None:
    ask = [{"role": "user", "content": "What time is it?"}]
    kw = {"model": model_name, "messages": ask, "tools": [NO_PARAMS], "tool_choice": "required"}
    _, calls, reason, _ = (_stream if stream else _whole)(oai, **kw, max_tokens=40, temperature=0)
    assert reason == "tool_calls" and [json.loads(c["arguments"]) for c in calls] == [{}]
    with RadixClient(stack.tokenizer_address) as client:
        out = client.chat(ask, tools=[NO_PARAMS], tool_choice="required", max_tokens=40)
    assert out.finish_reason == "tool_calls" and [c.args for c in out.tool_calls] == [{}]


def test_strict_closes_the_object(oai: openai.OpenAI, model_name: str) -> None:
    loose = {"type": "object", "properties": {"ticker": {"type": "string"}}}
    tool = {"type": "function", "function": {"name": "get_price", "parameters": loose}}
    tool["function"]["strict"] = True
    for seed in range(3):
        _, calls, reason, _ = _whole(
            oai, model=model_name, messages=MSFT, tools=[tool], tool_choice="required",
            max_tokens=60, temperature=1.0, seed=seed,
        )  # fmt: skip
        if reason == "tool_calls":
            assert set(json.loads(calls[0]["arguments"])) <= {"ticker"}


def test_streamed_tool_calls_keep_logprobs(oai: openai.OpenAI, model_name: str) -> None:
    kw = {"model": model_name, "messages": MSFT, "tools": [PRICE], "tool_choice": "required"}
    kw.update(max_tokens=60, temperature=0, logprobs=True, top_logprobs=2)
    whole, streamed = _whole(oai, **kw), _stream(oai, **kw)
    assert whole[3] > 0 and streamed[3] == whole[3]
    assert streamed[1] == whole[1]


def test_tokenize_counts_what_chat_uses(stack: Stack, oai: openai.OpenAI, model_name: str) -> None:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_price", "arguments": '{"ticker": "MSFT"}'}}  # fmt: skip
    turns = [*MSFT, {"role": "assistant", "content": None, "tool_calls": [call]},
             {"role": "tool", "tool_call_id": "call_1", "content": "410.5"}]  # fmt: skip
    for tools in (None, [PRICE]):
        extra = {"tools": tools} if tools else {}
        out = oai.chat.completions.create(model=model_name, messages=turns, max_tokens=1, **extra)
        resp = httpx.post(f"{stack.http_url}/tokenize", json={"messages": turns, **extra})
        assert resp.status_code == 200, resp.text
        assert resp.json()["count"] == out.usage.prompt_tokens
        text = httpx.post(f"{stack.http_url}/detokenize", json={"tokens": resp.json()["tokens"]})
        assert '"ticker": "MSFT"' in text.json()["prompt"]  # the assistant turn has its call


def test_sdk_samples_logprobs_and_tool_messages(stack: Stack) -> None:
    with RadixClient(stack.tokenizer_address) as client:
        out = client.chat(MSFT, n=2, max_tokens=8, min_tokens=8, temperature=1.0, seed=5)
        assert [c.index for c in out.choices] == [0, 1] and out.choices[0] is out
        for choice in out.choices:
            assert len(choice.token_ids) == 8 and choice.finish_reason == "length"
            assert choice.text == client.detokenize(choice.token_ids, skip_special_tokens=True)
        chunks = list(client.generate("Hello", max_tokens=4, logprobs=True, top_logprobs=3))
        tops = [t for c in chunks for t in c.top_logprobs]
        assert len(tops) == 4 and all(len(t) == 3 for t in tops)
        chunks = list(
            client.generate(messages=MSFT, tools=[PRICE], tool_choice="required", max_tokens=60)
        )
        for chunk in chunks:  # every message tells something
            assert chunk.text or chunk.tool_calls or chunk.finish_reason, chunk
        assert sum(len(c.token_ids) for c in chunks) == chunks[-1].completion_tokens

    async def samples() -> list[int]:
        async with AsyncRadixClient(stack.tokenizer_address) as client:
            out = await client.chat(MSFT, n=2, max_tokens=4, min_tokens=4, temperature=1.0)
            return [len(c.token_ids) for c in out.choices]

    assert asyncio.run(samples()) == [4, 4]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"logit_bias": {60000: 1.0}}, "logit_bias"),
        ({"messages": [{"role": "tool", "content": "1"}]}, "tool_call_id"),
    ],
)
def test_grpc_small_refusals(stack: Stack, kwargs: dict[str, Any], field: str) -> None:
    messages = kwargs.pop("messages", MSFT)
    with RadixClient(stack.tokenizer_address) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.chat(messages, max_tokens=2, **kwargs)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details()


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"temperature": 2.5}, "temperature", ""),
        ({"service_tier": "ultra"}, "service_tier", ""),
        ({"messages": [{"role": "tool", "content": "1"}]}, "messages[0].tool_call_id", ""),
        ({"tools": [PRICE], "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}},
         "tool_choice", "allowed_tools is not supported"),
    ],
)  # fmt: skip
def test_http_small_refusals(
    oai: openai.OpenAI, model_name: str, extra: dict[str, Any], field: str, words: str
) -> None:
    kw = {"model": model_name, "messages": MSFT, "max_tokens": 2, **extra}
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(**kw)
    body = err.value.body
    assert isinstance(body, dict) and body.get("param") == field, body
    assert words in body["message"]


def test_context_overflow_code_and_head_health(
    stack: Stack, oai: openai.OpenAI, model_name: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model=model_name, messages=MSFT, max_tokens=10**7)
    assert err.value.code == "context_length_exceeded"
    assert httpx.head(f"{stack.http_url}/health").status_code == 200
