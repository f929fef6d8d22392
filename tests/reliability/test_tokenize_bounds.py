"""``/tokenize`` and gRPC ``Tokenize`` are bounded as a prompt is (issue 23, item 4): a text far
over the context is refused, naming the field, after tokenizing only its head; before, the whole
text was tokenized on the event loop (a 30 MB body froze every stream for 44 s)."""

from __future__ import annotations

import time

import grpc
import pytest
import requests

from radixserve.v1 import tokenizer_pb2
from radixserve.v1 import tokenizer_pb2_grpc as tok_grpc


def _too_long(stack) -> str:
    info = tok_grpc.TokenizerServiceStub(grpc.insecure_channel(stack.tokenizer_address))
    ctx = info.GetModelInfo(tokenizer_pb2.GetModelInfoRequest(), timeout=10).info.max_context_len
    return "word " * (40 * (ctx + 2))  # ~2 tokens a word: far over the context


def test_http_tokenize_refuses_a_text_far_over_the_context(stack) -> None:
    text = _too_long(stack)
    start = time.monotonic()
    resp = requests.post(f"{stack.http_url}/tokenize", json={"prompt": text}, timeout=60)
    assert resp.status_code == 400, resp.text[:300]
    assert resp.json()["error"]["param"] == "prompt"
    assert time.monotonic() - start < 10
    ok = requests.post(f"{stack.http_url}/tokenize", json={"prompt": "hello"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["count"] >= 1


def test_grpc_tokenize_refuses_a_text_far_over_the_context(stack) -> None:
    stub = tok_grpc.TokenizerServiceStub(grpc.insecure_channel(stack.tokenizer_address))
    with pytest.raises(grpc.RpcError) as err:
        stub.Tokenize(tokenizer_pb2.TokenizeRequest(text=_too_long(stack)), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "text" in (err.value.details() or "")
    assert stub.Tokenize(tokenizer_pb2.TokenizeRequest(text="hello"), timeout=10).ids
