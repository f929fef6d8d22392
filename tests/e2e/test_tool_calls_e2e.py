"""Function calling end to end on the embedded SmolLM2: the gRPC SDK with tools, and arguments
streamed piece by piece over HTTP (the real `openai` client). tool_choice required or named makes
the answer a call (a grammar admits nothing else), so these hold whatever the model prefers."""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
import openai
import pytest

from radixserve.client.messages import Completion
from radixserve.client.sdk import RadixClient
from tests.e2e.conftest import wait_for
from tests.e2e.test_openai_structured import TIME
from tests.stack import Stack

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "unit": {"enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit", "days"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris for the next 3 days, in celsius?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def test_http_stream_sends_arguments_in_pieces(oai: openai.OpenAI, model_name: str) -> None:
    kw = {"model": model_name, "messages": ASK, "tools": [WEATHER, TIME], "tool_choice": NAMED}
    kw.update(max_tokens=80, temperature=0)
    pieces: list[str] = []
    heads, reason = [], None
    for ev in oai.chat.completions.create(**kw, stream=True):
        if not ev.choices:
            continue
        for d in ev.choices[0].delta.tool_calls or []:
            assert d.index == 0  # named: one call
            if d.id is not None:
                heads.append((d.id, d.type, d.function.name))
            pieces.append(d.function.arguments or "")
        reason = ev.choices[0].finish_reason or reason
    # temperature 0: the answer is the same every run, and it ends in its calls, not by max_tokens
    assert reason == "tool_calls"
    assert len(heads) == 1 and heads[0][1:] == ("function", "get_weather")
    assert len([p for p in pieces if p]) > 1, pieces  # the arguments came in several deltas
    args = json.loads("".join(pieces))
    assert set(args) == {"city", "unit", "days"}


def test_grpc_sdk_tools(stack: Stack, oai: openai.OpenAI, model_name: str) -> None:
    with RadixClient(stack.tokenizer_address) as client:
        out = client.chat(
            ASK, tools=[WEATHER, TIME], tool_choice="required", max_tokens=80, temperature=0
        )
        # temperature 0: the same answer every run, and it ends in its calls, not by max_tokens
        assert out.finish_reason == "tool_calls" and out.tool_calls and out.text == ""
        for i, call in enumerate(out.tool_calls):
            assert call.index == i and call.id.startswith("call_")
            assert call.name in ("get_weather", "get_time") and isinstance(call.args, dict)

        # Named, streamed: the call's pieces arrive over several messages; one call only.
        chunks = list(
            client.generate(
                messages=ASK,
                tools=[WEATHER, TIME],
                tool_choice="get_weather",
                parallel_tool_calls=False,
                max_tokens=80,
                temperature=0,
            )
        )
        pieces = [p for c in chunks for p in c.tool_calls]
        assert chunks[-1].finish_reason == "tool_calls" and len(pieces) > 1
        assert {p.index for p in pieces} == {0} and pieces[0].name == "get_weather"
        arguments = "".join(p.arguments for p in pieces)
        assert set(json.loads(arguments)) == {"city", "unit", "days"}
        # The HTTP API runs the same plan and grammar, and not streamed parses the whole text
        # at once: the same greedy call.
        http = oai.chat.completions.create(
            model=model_name, messages=ASK, tools=[WEATHER, TIME], tool_choice=NAMED,
            parallel_tool_calls=False, max_tokens=80, temperature=0,
        )  # fmt: skip
        assert http.choices[0].message.tool_calls[0].function.arguments == arguments

        # The call and its answer go back in: assistant tool_calls and a tool message.
        named = Completion()
        for chunk in chunks:
            named.add(chunk)
        back = [*ASK, named.message()]
        back.append({"role": "tool", "tool_call_id": named.tool_calls[0].id, "content": "21 C"})
        answer = client.chat(back, tools=[WEATHER], tool_choice="none", max_tokens=8)
        assert answer.text and not answer.tool_calls and answer.finish_reason != "tool_calls"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tools": [WEATHER], "tool_choice": "get_time"}, "chat.tool_choice"),
        ({"tool_choice": "required"}, "chat.tool_choice"),
        ({"tools": [{"name": "f", "parameters": "{not json"}]}, "chat.tools[0].parameters"),
        ({"tools": [{"name": "f", "parameters": "[1]"}]}, "chat.tools[0].parameters"),
        ({"tools": [{"name": "", "parameters": {}}]}, "chat.tools[0].name"),
    ],
)
def test_grpc_bad_tools_are_invalid_argument(
    stack: Stack, idle: Callable[[], bool], kwargs: dict, field: str
) -> None:
    with RadixClient(stack.tokenizer_address) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.chat(ASK, max_tokens=4, **kwargs)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{field}:"), err.value.details()
    assert wait_for(idle)
