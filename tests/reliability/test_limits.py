"""Issue 10, findings 6 and 9: admission limits, and large inputs that stall no one.

Too many requests in flight is 429 / RESOURCE_EXHAUSTED; a body or message over the size limit
is 413 / RESOURCE_EXHAUSTED before it is read; too many or too long stop strings are 400 naming
``stop``; and while huge inputs arrive, another stream's worst gap between chunks stays <= 1 s.
"""

from __future__ import annotations

import socket
import threading
import time

import grpc
import httpx
import openai
import pytest

from radixserve.v1 import common_pb2, tokenizer_pb2
from radixserve.v1 import tokenizer_pb2_grpc as tok_grpc
from tests.reliability.conftest import registered, wait_for

MB = 1024 * 1024


def _client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.http_url}/v1", api_key="x", max_retries=0, timeout=60)


def _model(stack) -> str:
    return stack.handles[-1].frontend.model_name


def test_too_many_in_flight_is_429_and_resource_exhausted(stack):
    manager = stack.handles[-1].frontend.manager
    manager.max_running = 1
    try:
        done: list[str] = []

        def long_one() -> None:
            resp = _client(stack).completions.create(
                model=_model(stack), prompt="A", max_tokens=30, extra_body={"ignore_eos": True}
            )
            done.append(resp.choices[0].finish_reason)

        thread = threading.Thread(target=long_one)
        thread.start()
        assert wait_for(lambda: manager.num_running == 1, timeout=30)
        with pytest.raises(openai.RateLimitError) as limited:  # 429
            _client(stack).completions.create(model=_model(stack), prompt="B", max_tokens=2)
        # NOTE (issue 23): a 429 says when to retry.
        assert limited.value.response.headers.get("retry-after") == "1"
        with grpc.insecure_channel(stack.tokenizer_address) as channel:
            stub = tok_grpc.TokenizerServiceStub(channel)
            req = tokenizer_pb2.GenerateRequest(
                text="B", sampling=common_pb2.SamplingParams(max_new_tokens=2)
            )
            with pytest.raises(grpc.RpcError) as exc:
                list(stub.Generate(req, timeout=10))
            assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        thread.join(60)
        assert done == ["length"]
    finally:
        manager.max_running = 512
    assert wait_for(lambda: registered(stack) == 0)


def test_oversized_body_and_message_are_refused_unread(stack):
    big = b'{"model": "m", "prompt": "' + b"a" * (50 * MB) + b'"}'
    t0 = time.monotonic()
    resp = httpx.post(f"{stack.http_url}/v1/completions", content=big, timeout=30)
    assert resp.status_code == 413 and "max_body_bytes" in resp.json()["error"]["message"]
    assert time.monotonic() - t0 < 5

    # Chunked (no declared length): cut as soon as it passes the limit.
    def chunks():
        yield b'{"model": "m", "prompt": "'
        for _ in range(40):
            yield b"a" * MB

    resp = httpx.post(f"{stack.http_url}/v1/completions", content=chunks(), timeout=30)
    assert resp.status_code == 413
    with grpc.insecure_channel(
        stack.tokenizer_address, options=[("grpc.max_send_message_length", 64 * MB)]
    ) as channel:
        stub = tok_grpc.TokenizerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as exc:
            stub.Tokenize(tokenizer_pb2.TokenizeRequest(text="a" * (40 * MB)), timeout=30)
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_413_reaches_a_client_that_pauses_mid_upload(stack):
    """The refusal is not lost to a reset: the server drops the rest of the upload before closing.

    A CI run lost a 413's body ("received 0 bytes, expected 153") when the server closed a socket
    holding unread upload bytes; this client stops sending half way, so that close was certain.
    """
    host, port = stack.http_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        head = (
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 * MB}\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"prompt": "' + b"a" * (4 * MB))
        time.sleep(0.5)  # NOTE: the answer is on its way; the old code closed with 4 MiB unread
        raw = b""
        while b"\r\n\r\n" not in raw:
            raw += sock.recv(65536)
        header, _, rest = raw.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in header.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the 413 body arrived"
            rest += chunk
    assert header.startswith(b"HTTP/1.1 413")
    assert b"max_body_bytes" in rest


@pytest.mark.parametrize("stop", [["x"] * 65, ["y" * 1025]])
def test_stop_strings_are_bounded(stack, stop):
    with pytest.raises(openai.BadRequestError) as exc:
        _client(stack).completions.create(model=_model(stack), prompt="A", max_tokens=2, stop=stop)
    assert exc.value.body["param"] == "stop"
    assert registered(stack) == 0


def _gaps_while(stack, work) -> tuple[float, object]:
    """Runs ``work`` while one stream runs; returns the stream's worst inter-chunk gap."""
    stamps: list[float] = []
    started = threading.Event()

    def stream() -> None:
        for _ in _client(stack).completions.create(
            model=_model(stack), prompt="Tick", max_tokens=60, stream=True,
            extra_body={"ignore_eos": True},
        ):  # fmt: skip
            stamps.append(time.monotonic())
            started.set()

    thread = threading.Thread(target=stream)
    thread.start()
    assert started.wait(30)
    result = work()
    thread.join(60)
    return max(b - a for a, b in zip(stamps, stamps[1:], strict=False)), result


@pytest.mark.timeout(120)
def test_huge_inputs_do_not_stall_other_streams(stack):
    def huge_inputs() -> list[object]:
        out = []
        body = b'{"model": "m", "prompt": "' + b"word " * (10 * MB) + b'"}'  # 50 MB
        out.append(httpx.post(f"{stack.http_url}/v1/completions", content=body).status_code)
        prompt = "many words " * (MB // 2)  # 5.5 MB: under the body limit, far over the context
        try:
            _client(stack).completions.create(model=_model(stack), prompt=prompt, max_tokens=2)
        except openai.BadRequestError as exc:
            out.append(exc.body["param"])
        with grpc.insecure_channel(stack.tokenizer_address) as channel:
            stub = tok_grpc.TokenizerServiceStub(channel)
            req = tokenizer_pb2.GenerateRequest(text="x y " * (4 * MB))  # 16 MB
            try:
                list(stub.Generate(req, timeout=60))
            except grpc.RpcError as exc:
                out.append(exc.code())
        return out

    gap, outcomes = _gaps_while(stack, huge_inputs)
    assert outcomes == [413, "prompt", grpc.StatusCode.INVALID_ARGUMENT]
    assert gap <= 1.0, f"another stream stalled {gap:.2f}s"
    assert wait_for(lambda: registered(stack) == 0)
