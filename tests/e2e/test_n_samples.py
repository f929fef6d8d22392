"""``n > 1`` through the stack: OpenAI choices and usage, gRPC per-sample messages, one prefill."""

from __future__ import annotations

import uuid

import grpc
import httpx
import openai
import pytest

from radixserve.v1 import common_pb2, tokenizer_pb2
from radixserve.v1 import tokenizer_pb2_grpc as tok_grpc
from tests.stack import Stack

QUESTION = [{"role": "user", "content": "Name a color."}]


@pytest.fixture(scope="module")
def stub(stack: Stack):
    with grpc.insecure_channel(stack.tokenizer_address) as channel:
        yield tok_grpc.TokenizerServiceStub(channel)


def test_chat_n_choices_usage_and_seeds(oai: openai.OpenAI, model_name: str) -> None:
    args = dict(model=model_name, messages=QUESTION, temperature=1.0, max_tokens=8, seed=7)
    resp = oai.chat.completions.create(**args, n=3)
    assert [c.index for c in resp.choices] == [0, 1, 2]
    single = oai.chat.completions.create(**args)
    assert resp.usage.prompt_tokens == single.usage.prompt_tokens  # the prompt counts once
    assert 3 <= resp.usage.completion_tokens <= 24
    # sample i uses seed + i: sample 0 is the n=1 answer with the same seed
    assert resp.choices[0].message.content == single.choices[0].message.content
    again = oai.chat.completions.create(**args, n=3)
    assert [c.message.content for c in again.choices] == [c.message.content for c in resp.choices]


def test_greedy_n_gives_identical_answers(oai: openai.OpenAI, model_name: str) -> None:
    resp = oai.completions.create(
        model=model_name, prompt="The sky is", temperature=0, max_tokens=6, n=2
    )
    assert len(resp.choices) == 2 and resp.choices[0].text == resp.choices[1].text
    assert resp.usage.completion_tokens == 12


def test_streamed_n_chunks_carry_their_index(oai: openai.OpenAI, model_name: str) -> None:
    stream = oai.chat.completions.create(
        model=model_name,
        messages=QUESTION,
        max_tokens=5,
        n=2,
        seed=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    finished = {c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason}
    assert finished == {0, 1}
    roles = [c.choices[0].index for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == [0, 1]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10


def test_n_out_of_range_is_400(stack: Stack) -> None:
    for n in (0, 17):
        resp = httpx.post(
            f"{stack.http_url}/v1/completions", json={"prompt": "x", "n": n}, timeout=30
        )
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "n"


def test_grpc_samples_share_one_prefill(stub) -> None:
    # A fresh prompt well past in_batch_prefix_threshold (32 tokens): one sample computes it,
    # the others wait a step and find it in the radix cache.
    words = " ".join(uuid.uuid4().hex for _ in range(12))
    request = tokenizer_pb2.GenerateRequest(
        text=f"Repeat these codes: {words}",
        sampling=common_pb2.SamplingParams(max_new_tokens=4, ignore_eos=True, seed=1),
        n=4,
    )
    last: dict[int, tokenizer_pb2.GenerateResponse] = {}
    for resp in stub.Generate(request, timeout=60):
        last[resp.index] = resp
    assert sorted(last) == [0, 1, 2, 3]
    assert all(r.finish_reason == common_pb2.FINISH_REASON_LENGTH for r in last.values())
    prompt = last[0].usage.prompt_tokens
    cached = sorted(r.usage.cached_tokens for r in last.values())
    assert prompt > 64
    assert cached[0] < prompt // 2  # the one that ran the prefill
    assert all(c >= prompt - 8 for c in cached[1:]), cached  # samples 2..n reuse the prefix


def test_grpc_n_out_of_range_is_invalid_argument(stub) -> None:
    request = tokenizer_pb2.GenerateRequest(text="hi", n=17)
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Generate(request, timeout=30))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("n:")
