"""The OpenAI-compatible HTTP API through the real ``openai`` client."""

from __future__ import annotations

import httpx
import openai

from tests.stack import Stack

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_chat_greedy_answers_paris(oai: openai.OpenAI, model_name: str) -> None:
    resp = oai.chat.completions.create(
        model=model_name, messages=QUESTION, temperature=0, max_tokens=16
    )
    choice = resp.choices[0]
    assert "Paris" in choice.message.content
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert resp.object == "chat.completion" and resp.model == model_name
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    u = resp.usage
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_chat_streamed_matches_unstreamed(oai: openai.OpenAI, model_name: str) -> None:
    args = dict(model=model_name, messages=QUESTION, temperature=0, max_completion_tokens=16)
    whole = oai.chat.completions.create(**args).choices[0].message.content
    stream = oai.chat.completions.create(**args, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == whole and "Paris" in text
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert all(c.usage is None for c in chunks)
    assert len({c.id for c in chunks}) == 1


def test_chat_stream_include_usage(oai: openai.OpenAI, model_name: str) -> None:
    stream = oai.chat.completions.create(
        model=model_name,
        messages=QUESTION,
        temperature=0,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 4
    assert chunks[-2].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks[:-1])


def test_completions(oai: openai.OpenAI, model_name: str) -> None:
    prompt = "The capital of France is"
    resp = oai.completions.create(model=model_name, prompt=prompt, temperature=0, max_tokens=6)
    assert resp.object == "text_completion"
    assert "Paris" in resp.choices[0].text
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 6
    stream = oai.completions.create(
        model=model_name, prompt=prompt, temperature=0, max_tokens=6, stream=True
    )
    assert "".join(c.choices[0].text for c in stream) == resp.choices[0].text


def test_model_may_be_omitted(stack: Stack) -> None:
    body = {"prompt": "The capital of France is", "max_tokens": 1, "temperature": 0}
    resp = httpx.post(f"{stack.http_url}/v1/completions", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["completion_tokens"] == 1


def test_completions_token_ids_default_max_tokens(oai: openai.OpenAI, model_name: str) -> None:
    resp = oai.completions.create(
        model=model_name,
        prompt=[504, 3575, 282, 4649, 314],
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert resp.usage.completion_tokens == 16  # OpenAI's default max_tokens for completions
    assert resp.usage.prompt_tokens == 5


def test_stop_strings(oai: openai.OpenAI, model_name: str) -> None:
    resp = oai.chat.completions.create(
        model=model_name, messages=QUESTION, temperature=0, max_tokens=16, stop=["Paris"]
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "stop"
    assert "Paris" not in choice.message.content and choice.message.content
    stream = oai.completions.create(
        model=model_name,
        prompt="The capital of France is",
        temperature=0,
        max_tokens=8,
        stop=".",
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks)
    assert "." not in text and "Paris" in text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_logprobs(oai: openai.OpenAI, model_name: str) -> None:
    resp = oai.chat.completions.create(
        model=model_name, messages=QUESTION, temperature=0, max_tokens=4, logprobs=True
    )
    content = resp.choices[0].logprobs.content
    assert len(content) == resp.usage.completion_tokens
    assert all(item.logprob <= 0 for item in content)
    assert "".join(item.token for item in content) == resp.choices[0].message.content


def test_models_and_health(oai: openai.OpenAI, stack: Stack, model_name: str) -> None:
    models = oai.models.list().data
    assert [m.id for m in models] == [model_name] and model_name
    assert oai.models.retrieve(model_name).id == model_name
    health = httpx.get(f"{stack.http_url}/health")
    assert health.status_code == 200
