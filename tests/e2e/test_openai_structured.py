"""Structured output, tool calls and the newer parameters, through the real `openai` client.

Every constrained answer of the embedded SmolLM2 must parse against its schema, streamed and not.
"""

from __future__ import annotations

import concurrent.futures
import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.stack import Stack

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]},
    {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
    {
        "type": "object",
        "properties": {"color": {"enum": ["red", "green", "blue"]}},
        "required": ["color"],
    },
    {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
        "required": ["tags"],
    },
    {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
                "required": ["id", "email"],
            }
        },
        "required": ["user"],
    },
    {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 4},
    {
        "type": "object",
        "properties": {"price": {"type": "number"}, "currency": {"enum": ["EUR", "USD"]}},
        "required": ["price", "currency"],
    },
    {
        "type": "object",
        "properties": {
            "points": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                    "required": ["x", "y"],
                },
                "maxItems": 2,
            }
        },
        "required": ["points"],
    },
    {
        "type": "object",
        "properties": {"status": {"const": "done"}, "count": {"type": "integer"}},
        "required": ["status", "count"],
        "additionalProperties": False,
    },
]
ASK = [{"role": "user", "content": "Describe a person as JSON."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"enum": ["UTC", "CET"]}},
            "required": ["zone"],
        },
    },
}


def _format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}


def _ask(  # noqa: ANN202
    oai: openai.OpenAI, model_name: str, schema: dict[str, Any], stream: bool, seed: int = 0
):
    # Seeded: a sampled answer that rambles past max_tokens does so on every run, not by chance.
    kw = {"model": model_name, "messages": ASK, "max_tokens": 60, "temperature": 0.8, "seed": seed}
    kw["response_format"] = _format(schema)
    if not stream:
        out = oai.chat.completions.create(**kw)
        return out.choices[0].message.content, out.choices[0].finish_reason
    parts, reason = [], None
    for ev in oai.chat.completions.create(**kw, stream=True):
        if ev.choices:
            parts.append(ev.choices[0].delta.content or "")
            reason = ev.choices[0].finish_reason or reason
    return "".join(parts), reason


@pytest.mark.timeout(240)
@pytest.mark.parametrize("stream", [False, True])
def test_ten_schemas_parse(oai: openai.OpenAI, model_name: str, stream: bool) -> None:
    # All at once: they decode in one batch, and grammars of different rows share steps.
    with concurrent.futures.ThreadPoolExecutor(len(SCHEMAS)) as pool:
        answers = list(
            pool.map(lambda i: _ask(oai, model_name, SCHEMAS[i], stream, i), range(len(SCHEMAS)))
        )
    parsed = 0
    for schema, (text, reason) in zip(SCHEMAS, answers, strict=True):
        if reason == "length":  # cut by max_tokens: a prefix of valid output, nothing to parse
            continue
        jsonschema.validate(json.loads(text), schema)
        parsed += 1
    # Every finished answer parses; half must finish (so cut answers alone cannot pass it).
    assert parsed >= 5, f"only {parsed} of {len(SCHEMAS)} answers finished within max_tokens"


def test_json_object_regex_choice_ebnf(oai: openai.OpenAI, model_name: str) -> None:
    out = oai.chat.completions.create(
        model=model_name, messages=ASK, max_tokens=40, response_format={"type": "json_object"}
    )
    if out.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(out.choices[0].message.content), dict)
    out = oai.completions.create(
        model=model_name, prompt="Phone:", max_tokens=10, extra_body={"regex": r"[0-9]{3}-[0-9]{4}"}
    )
    assert out.choices[0].text[:8][3] == "-" and out.choices[0].text[:3].isdigit()
    out = oai.chat.completions.create(
        model=model_name, messages=ASK, max_tokens=5, extra_body={"choice": ["yes", "no"]}
    )
    assert out.choices[0].message.content in ("yes", "no")
    out = oai.completions.create(
        model=model_name, prompt="x", max_tokens=8, extra_body={"ebnf": 'start: "ab" ("c")*'}
    )
    assert out.choices[0].text.startswith("ab") and set(out.choices[0].text[2:]) <= {"c"}


@pytest.mark.parametrize("stream", [False, True])
def test_required_tool_call(oai: openai.OpenAI, model_name: str, stream: bool) -> None:
    kw = {
        "model": model_name,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER, TIME],
        "tool_choice": "required",
        "max_tokens": 80,
        "temperature": 0,
    }
    if stream:  # each call: a first delta with id and name, then pieces of its arguments
        calls, reason = [], None
        for ev in oai.chat.completions.create(**kw, stream=True):
            if ev.choices:
                for d in ev.choices[0].delta.tool_calls or []:
                    if d.index == len(calls):
                        calls.append(d.model_copy(deep=True))
                    else:
                        calls[d.index].function.arguments += d.function.arguments
                reason = ev.choices[0].finish_reason or reason
    else:
        out = oai.chat.completions.create(**kw)
        calls, reason = out.choices[0].message.tool_calls, out.choices[0].finish_reason
    # temperature 0: the answer is the same every run, and it ends in its calls, not by max_tokens
    assert reason == "tool_calls" and calls
    for call in calls:
        assert call.function.name in ("get_weather", "get_time") and call.id
        json.loads(call.function.arguments)


def test_auto_and_none_tool_choice(oai: openai.OpenAI, model_name: str) -> None:
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    out = oai.chat.completions.create(
        model=model_name, messages=ask, tools=[WEATHER], max_tokens=40, temperature=0
    )
    choice = out.choices[0]
    if choice.message.tool_calls:  # the model chose to call: a parsed call, named right
        assert choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls[0].function.name == "get_weather"
    else:
        assert choice.message.content and choice.finish_reason in ("stop", "length")
    out = oai.chat.completions.create(
        model=model_name, messages=ask, tools=[WEATHER], tool_choice="none", max_tokens=8
    )
    assert out.choices[0].message.tool_calls is None


def test_named_tool_and_answer_back(oai: openai.OpenAI, model_name: str) -> None:
    out = oai.chat.completions.create(
        model=model_name,
        messages=[{"role": "user", "content": "What time is it?"}],
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
        max_tokens=60,
        temperature=0,
    )
    calls = out.choices[0].message.tool_calls
    assert out.choices[0].finish_reason == "tool_calls" and len(calls) == 1
    assert calls[0].function.name == "get_time"
    assert json.loads(calls[0].function.arguments)["zone"] in ("UTC", "CET")
    back = oai.chat.completions.create(
        model=model_name,
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "What time is it?"},
            {"role": "assistant", "content": None, "tool_calls": [calls[0].model_dump()]},
            {"role": "tool", "tool_call_id": calls[0].id, "content": "12:00"},
        ],
        max_tokens=5,
    )
    assert back.choices[0].message.content is not None


def test_min_p_logit_bias_echo_batch(oai: openai.OpenAI, model_name: str, stack: Stack) -> None:
    out = oai.completions.create(
        model=model_name, prompt="The sky is", max_tokens=4, extra_body={"min_p": 0.5}, seed=1
    )
    assert out.choices[0].text
    banned = oai.completions.create(model=model_name, prompt="The sky is", max_tokens=1,
                                    temperature=0, logprobs=0)  # fmt: skip
    first = banned.choices[0].logprobs.tokens[0]
    body = {"prompt": first, "add_special_tokens": False}
    token_id = httpx.post(f"{stack.http_url}/tokenize", json=body).json()["tokens"][0]
    forced = oai.completions.create(model=model_name, prompt="The sky is", max_tokens=1,
                                    temperature=0, logit_bias={str(token_id): -100})  # fmt: skip
    assert forced.choices[0].text != first
    out = oai.completions.create(
        model=model_name, prompt=["One", "Two"], max_tokens=2, n=2, echo=True, temperature=0
    )
    assert [c.index for c in sorted(out.choices, key=lambda c: c.index)] == [0, 1, 2, 3]
    texts = {c.index: c.text for c in out.choices}
    assert texts[0].startswith("One") and texts[3].startswith("Two")


BAD = [
    ({"temperature": 1e39}, "temperature"),
    ({"top_p": 1e-50}, "top_p"),
    ({"repetition_penalty": 1e39}, "repetition_penalty"),
    ({"max_tokens": True}, "max_tokens"),
    ({"top_k": 2**31}, "top_k"),
    ({"stop_token_ids": [2**31]}, "stop_token_ids"),
    ({"min_p": 5}, "min_p"),
    ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ({"logit_bias": {"5": 500}}, "logit_bias"),
    ({"suffix": "end"}, "suffix"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"bogus_field": 1}, "bogus_field"),
    ({"prompt": "\ud800"}, "prompt"),
    ({"regex": "(("}, "regex"),
    ({"ebnf": "start: (("}, "ebnf"),
]


@pytest.mark.parametrize(("extra", "field"), BAD)
def test_bad_parameters_are_400_naming_the_field(
    stack: Stack, extra: dict[str, Any], field: str
) -> None:
    body = json.dumps({"prompt": "x", "max_tokens": 2, **extra})
    resp = httpx.post(
        f"{stack.http_url}/v1/completions",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] and field in error["param"], error


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"response_format": {"type": "bogus"}}, "response_format"),
        ({"response_format": _format({"type": "bogus"})}, "response_format"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"messages": [{"role": "user", "content": "\ud800"}]}, "messages"),
    ],
)
def test_bad_chat_parameters(stack: Stack, extra: dict[str, Any], field: str) -> None:
    body = json.dumps({"messages": ASK, "max_tokens": 2, **extra})
    resp = httpx.post(
        f"{stack.http_url}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 400, resp.text
    assert field in resp.json()["error"]["param"]


def test_endpoints(stack: Stack) -> None:
    base = stack.http_url
    ids = httpx.post(f"{base}/tokenize", json={"prompt": "Hello 😀"}).json()["tokens"]
    assert httpx.post(f"{base}/detokenize", json={"tokens": ids}).json()["prompt"].endswith("😀")
    assert httpx.get(f"{base}/version").json()["version"]
    assert httpx.post(f"{base}/v1/embeddings", json={"input": "x"}).status_code == 404
    lone = httpx.post(
        f"{base}/tokenize",
        content='{"prompt": "a\\ud800"}',
        headers={"content-type": "application/json"},
    )
    assert lone.status_code == 400 and lone.json()["error"]["param"] == "prompt"
    metrics = httpx.get(f"{base}/metrics")
    assert metrics.status_code == 200 and "radixserve_" in metrics.text


def test_logprob_bytes_rebuild_the_text(oai: openai.OpenAI, model_name: str) -> None:
    out = oai.chat.completions.create(
        model=model_name,
        messages=[{"role": "user", "content": "Say a smiley emoji"}],
        max_tokens=12,
        logprobs=True,
        extra_body={"regex": "😀+"},
    )
    entries = out.choices[0].logprobs.content
    raw = b"".join(bytes(e.bytes) for e in entries)
    assert raw.decode("utf-8", errors="ignore").startswith("😀")


def test_grpc_sdk_structured_output(stack: Stack) -> None:
    from radixserve.client.sdk import RadixClient

    schema = SCHEMAS[5]
    with RadixClient(stack.tokenizer_address) as client:
        out = client.chat(ASK, max_tokens=60, json_schema=schema, temperature=0.7)
        if out.finish_reason == "stop":
            jsonschema.validate(json.loads(out.text), schema)
        out = client.complete("Answer:", max_tokens=4, choice=["yes", "no"], min_p=0.1)
        assert out.text in ("yes", "no")
        out = client.complete("Phone:", max_tokens=8, regex="[0-9]{3}", logit_bias={5: -100.0})
        assert out.text.isdigit() and len(out.text) == 3
        with pytest.raises(Exception, match="regex"):
            client.complete("x", max_tokens=2, regex="((")


def test_api_key_and_cors(stack: Stack) -> None:
    from fastapi.testclient import TestClient

    from radixserve.tokenizer.metrics import TokenizerMetrics
    from radixserve.tokenizer.openai.routes import create_app

    frontend = stack.handles[-1].frontend
    app = create_app(frontend, TokenizerMetrics(), api_key="s3cret", allowed_origins="http://a.b")
    with TestClient(app) as client:
        assert client.get("/v1/models").status_code == 401
        bad = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
        good = client.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 200
        pre = client.options(
            "/v1/models",
            headers={"Origin": "http://a.b", "Access-Control-Request-Method": "GET"},
        )
        assert pre.headers.get("access-control-allow-origin") == "http://a.b"
