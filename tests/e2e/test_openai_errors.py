"""Bad requests are answered 400 naming the field; a client that leaves aborts its request."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import openai
import pytest

from radixserve.v1 import tokenizer_pb2, tokenizer_pb2_grpc
from tests.e2e.conftest import wait_for
from tests.stack import Stack

CHAT = [{"role": "user", "content": "Hi"}]


def post(stack: Stack, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(f"{stack.http_url}{path}", json=body, timeout=60, **kw)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/completions", {"prompt": ""}, "prompt"),
        ("/v1/completions", {"prompt": []}, "prompt"),
        ("/v1/completions", {"prompt": "x", "max_tokens": -1}, "max_tokens"),
        ("/v1/completions", {"prompt": "x", "temperature": -0.5}, "temperature"),
        ("/v1/completions", {"prompt": "x", "top_p": 0}, "top_p"),
        ("/v1/completions", {"prompt": "x", "top_p": 1.5}, "top_p"),
        ("/v1/completions", {"prompt": "x", "seed": -3}, "seed"),
        ("/v1/completions", {"prompt": "x", "stop": [""]}, "stop"),
        ("/v1/completions", {"prompt": [10**9]}, "prompt"),
        ("/v1/completions", {"prompt": "x", "n": 17}, "n"),
        ("/v1/completions", {"prompt": ["a", ""]}, "prompt[1]"),
        ("/v1/completions", {"max_tokens": 3}, "prompt"),
        ("/v1/chat/completions", {"messages": []}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, "role"),
        ("/v1/chat/completions", {"messages": CHAT, "max_completion_tokens": 0}, "max_completion"),
        ("/v1/chat/completions", {"messages": CHAT, "temperature": "hot"}, "temperature"),
        ("/v1/chat/completions", {"messages": "hello"}, "messages"),
    ],
)
def test_bad_request_names_field(stack: Stack, path: str, body: Any, field: str) -> None:
    resp = post(stack, path, body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert field in error["message"] and error["type"] == "invalid_request_error"


def test_openai_client_sees_400(oai: openai.OpenAI, model_name: str) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model=model_name, messages=CHAT, temperature=-1)
    assert "temperature" in exc.value.message
    with pytest.raises(openai.BadRequestError) as exc:
        oai.completions.create(model=model_name, prompt="x", max_tokens=-5)
    assert "max_tokens" in exc.value.message


def test_prompt_longer_than_context(stack: Stack, oai: openai.OpenAI, model_name: str) -> None:
    context = oai.models.list().data[0].model_extra["max_model_len"]
    prompt = list(range(100, 100 + context + 1))
    resp = post(stack, "/v1/completions", {"prompt": prompt, "max_tokens": 1})
    assert resp.status_code == 400 and "prompt" in resp.json()["error"]["message"]
    resp = post(stack, "/v1/completions", {"prompt": prompt[:-10], "max_tokens": 20})
    assert resp.status_code == 400 and "max_tokens" in resp.json()["error"]["message"]


def test_unknown_model(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        oai.chat.completions.create(model="gpt-17", messages=CHAT, max_tokens=1)
    assert "gpt-17" in exc.value.message and "does not exist" in exc.value.message
    assert exc.value.body["param"] == "model"


def test_malformed_json(stack: Stack) -> None:
    for content in (b'{"messages": [', b"not json at all"):
        resp = httpx.post(
            f"{stack.http_url}/v1/chat/completions",
            content=content,
            headers={"content-type": "application/json"},
        )
        assert resp.status_code == 400, resp.text
        assert "JSON" in resp.json()["error"]["message"]
    resp = httpx.get(f"{stack.http_url}/v1/nothing-here")
    assert resp.status_code == 404 and "error" in resp.json()


def test_invalid_utf8_and_oversized_requests(stack: Stack) -> None:
    # A body that is not UTF-8 is malformed JSON: 400, not a crash.
    resp = httpx.post(
        f"{stack.http_url}/v1/completions",
        content=b'{"prompt": "caf\xe9 \xff\xfe", "max_tokens": 1}',
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400, resp.text
    # Token ids whose bytes are not valid UTF-8 on their own (single bytes of a multi-byte
    # character) are a fine prompt; the output never carries half a character.
    with grpc.insecure_channel(stack.tokenizer_address) as channel:
        stub = tokenizer_pb2_grpc.TokenizerServiceStub(channel)
        byte_ids = stub.Tokenize(tokenizer_pb2.TokenizeRequest(text="é"), timeout=5).ids
        text = stub.Detokenize(tokenizer_pb2.DetokenizeRequest(ids=byte_ids[:1]), timeout=5).text
        assert isinstance(text, str)
    resp = post(stack, "/v1/completions", {"prompt": [226, 128], "max_tokens": 2})
    assert resp.status_code == 200
    # An oversized prompt (far past the context) is a 400 naming the prompt.
    resp = post(stack, "/v1/completions", {"prompt": "word " * 60000, "max_tokens": 1})
    assert resp.status_code == 400 and "prompt" in resp.json()["error"]["message"]


def test_still_serving_after_errors(stack: Stack, idle: Callable[[], bool]) -> None:
    post(stack, "/v1/completions", {"prompt": "", "max_tokens": 1})
    resp = post(stack, "/v1/completions", {"prompt": "Hello", "max_tokens": 2})
    assert resp.status_code == 200 and resp.json()["usage"]["completion_tokens"] == 2
    assert wait_for(idle)


LONG = {"prompt": "Count: 1, 2, 3,", "max_tokens": 2000, "ignore_eos": True, "temperature": 0}


def test_stream_disconnect_aborts(stack: Stack, idle: Callable[[], bool]) -> None:
    with httpx.stream(
        "POST", f"{stack.http_url}/v1/completions", json={**LONG, "stream": True}
    ) as r:
        assert r.status_code == 200
        events = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                assert "choices" in json.loads(line[6:])
                events += 1
            if events == 3:
                break
    manager = stack.handles[-1].frontend.manager
    assert wait_for(idle, timeout=10), f"still running: {manager.num_running}"


def test_unary_disconnect_aborts(stack: Stack, idle: Callable[[], bool]) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{stack.http_url}/v1/completions", json=LONG, timeout=1.0)
    assert wait_for(idle, timeout=10)
