"""Logprobs with top logprobs, min_tokens and penalties end to end, through the real clients."""

from __future__ import annotations

import math
from typing import Any

import grpc
import httpx
import openai
import pytest

from radixserve.v1 import common_pb2, tokenizer_pb2
from radixserve.v1 import tokenizer_pb2_grpc as tok_grpc
from tests.stack import Stack

CHAT = [{"role": "user", "content": "What is the capital of France?"}]
SHORT = [{"role": "user", "content": "What is 2+2?"}]  # greedy: 12 tokens, then EOS
REPETITIVE = "one two one two one two one two one two one two"


def test_chat_logprobs_with_top_logprobs(oai: openai.OpenAI, model_name: str) -> None:
    resp = oai.chat.completions.create(
        model=model_name, messages=CHAT, temperature=0, max_tokens=6, logprobs=True, top_logprobs=3
    )
    content = resp.choices[0].logprobs.content
    assert len(content) == resp.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == 3
        lps = [t.logprob for t in entry.top_logprobs]
        assert lps == sorted(lps, reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert entry.top_logprobs[0].token == entry.token
        assert math.isclose(entry.top_logprobs[0].logprob, entry.logprob, abs_tol=1e-5)
    assert "".join(e.token for e in content).startswith(resp.choices[0].message.content[:3])


def test_chat_stream_carries_top_logprobs(oai: openai.OpenAI, model_name: str) -> None:
    stream = oai.chat.completions.create(
        model=model_name, messages=CHAT, temperature=0, max_tokens=4, logprobs=True,
        top_logprobs=2, stream=True,
    )  # fmt: skip
    entries = [
        e
        for c in stream
        if c.choices and c.choices[0].logprobs
        for e in c.choices[0].logprobs.content
    ]
    assert len(entries) == 4 and all(len(e.top_logprobs) == 2 for e in entries)


def test_completions_logprobs_k(oai: openai.OpenAI, model_name: str) -> None:
    resp = oai.completions.create(
        model=model_name, prompt="The capital of France is", temperature=0, max_tokens=5,
        logprobs=2,
    )  # fmt: skip
    lp = resp.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    assert "".join(lp.tokens) == resp.choices[0].text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(5)]
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert 1 <= len(top) <= 2 and math.isclose(max(top.values()), logprob, abs_tol=1e-5)
        assert top.get(token) == pytest.approx(logprob, abs=1e-5)


def test_grpc_generate_returns_top_logprobs(stack: Stack) -> None:
    with grpc.insecure_channel(stack.tokenizer_address) as channel:
        stub = tok_grpc.TokenizerServiceStub(channel)
        req = tokenizer_pb2.GenerateRequest(
            text="The capital of France is",
            sampling=common_pb2.SamplingParams(
                temperature=0, max_new_tokens=3, logprobs=True, top_logprobs=4
            ),
        )
        resps = list(stub.Generate(req, timeout=60))
    ids = [t for r in resps for t in r.token_ids]
    tops = [t for r in resps for t in r.top_logprobs]
    assert len(tops) == len(ids) == 3
    assert all(
        len(t.token_ids) == 4 and t.token_ids[0] == i for t, i in zip(tops, ids, strict=True)
    )


def test_min_tokens_holds_off_eos(oai: openai.OpenAI, model_name: str) -> None:
    args: dict[str, Any] = dict(model=model_name, messages=SHORT, temperature=0, max_tokens=40)
    free = oai.chat.completions.create(**args)
    assert free.choices[0].finish_reason == "stop"
    want = free.usage.completion_tokens + 6
    held = oai.chat.completions.create(**args, extra_body={"min_tokens": want})
    assert held.usage.completion_tokens >= want
    assert held.choices[0].message.content.startswith(free.choices[0].message.content)


@pytest.mark.parametrize(
    "penalty", [{"frequency_penalty": 1.5}, {"presence_penalty": 1.5}, {"repetition_penalty": 1.5}]
)
def test_penalty_changes_greedy_output(
    oai: openai.OpenAI, model_name: str, penalty: dict[str, float]
) -> None:
    args: dict[str, Any] = dict(model=model_name, prompt=REPETITIVE, temperature=0, max_tokens=12)
    plain = oai.completions.create(**args).choices[0].text
    penalized = oai.completions.create(**args, extra_body=penalty).choices[0].text
    assert plain.count("two") >= 4 and penalized != plain  # greedy loops; penalties break it


CHAT_MIN = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("path", "extra", "field"),
    [
        ("/v1/completions", {"frequency_penalty": 2.5}, "frequency_penalty"),
        ("/v1/completions", {"presence_penalty": -3}, "presence_penalty"),
        ("/v1/completions", {"repetition_penalty": 0}, "repetition_penalty"),
        ("/v1/completions", {"min_tokens": -1}, "min_tokens"),
        ("/v1/completions", {"min_tokens": 9, "max_tokens": 4}, "min_tokens"),
        ("/v1/completions", {"logprobs": 21}, "logprobs"),
        ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
    ],
)
def test_bad_values_are_400_naming_the_field(
    stack: Stack, path: str, extra: dict[str, Any], field: str
) -> None:
    body = {"prompt": "x"} if path == "/v1/completions" else {"messages": CHAT_MIN}
    resp = httpx.post(f"{stack.http_url}{path}", json={**body, **extra}, timeout=60)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert field in error["message"] and error["param"] == field


def test_grpc_bad_penalty_is_invalid_argument(stack: Stack) -> None:
    with grpc.insecure_channel(stack.tokenizer_address) as channel:
        stub = tok_grpc.TokenizerServiceStub(channel)
        req = tokenizer_pb2.GenerateRequest(
            text="x", sampling=common_pb2.SamplingParams(presence_penalty=7)
        )
        with pytest.raises(grpc.RpcError) as exc:
            list(stub.Generate(req, timeout=30))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "presence_penalty" in exc.value.details()
