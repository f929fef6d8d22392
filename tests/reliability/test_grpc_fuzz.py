"""Issue 10: no client input makes the gRPC front door fail with INTERNAL or UNKNOWN.

Hypothesis builds GenerateRequest, Tokenize, Detokenize and Abort messages from any values the
wire allows (NaN and infinite floats, negative and huge integers, odd unicode, empty inputs).
Each answer is OK or a client-side code; afterwards the front door holds no request.
"""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radixserve.v1 import common_pb2, tokenizer_pb2
from radixserve.v1 import tokenizer_pb2_grpc as tok_grpc
from tests.reliability.conftest import registered, wait_for

CLIENT_CODES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE,
}
INT32 = st.integers(-(2**31), 2**31 - 1)
SMALL = st.integers(-3, 40)
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)  # UTF-8 on the wire


@st.composite
def sampling(draw) -> common_pb2.SamplingParams:
    sp = common_pb2.SamplingParams()
    for name in ("temperature", "top_p", "frequency_penalty", "presence_penalty",
                 "repetition_penalty"):  # fmt: skip
        if draw(st.booleans()):
            setattr(sp, name, draw(FLOATS))
    for name in ("top_k", "min_new_tokens", "top_logprobs"):
        if draw(st.booleans()):
            setattr(sp, name, draw(st.one_of(SMALL, INT32)))
    # Mostly small budgets (a valid request runs for real), sometimes anything.
    sp.max_new_tokens = draw(st.one_of(st.integers(-2, 4), INT32))
    if draw(st.booleans()):
        sp.seed = draw(st.integers(0, 2**64 - 1))
    sp.stop_token_ids.extend(draw(st.lists(st.one_of(SMALL, INT32), max_size=3)))
    sp.stop.extend(draw(st.lists(TEXT, max_size=3)))
    for name in ("ignore_eos", "skip_special_tokens", "logprobs", "include_stop_str_in_output"):
        if draw(st.booleans()):
            setattr(sp, name, draw(st.booleans()))
    return sp


@st.composite
def generate_request(draw) -> tokenizer_pb2.GenerateRequest:
    req = tokenizer_pb2.GenerateRequest(rid=draw(st.one_of(st.just(""), TEXT)))
    kind = draw(st.sampled_from(["text", "chat", "token_ids", "none"]))
    if kind == "text":
        req.text = draw(TEXT)
    elif kind == "chat":
        roles = st.one_of(st.sampled_from(["system", "user", "assistant", "tool"]), TEXT)
        for _ in range(draw(st.integers(0, 3))):
            req.chat.messages.add(role=draw(roles), content=draw(TEXT))
        if not req.chat.messages:
            req.chat.SetInParent()
    elif kind == "token_ids":
        req.token_ids.ids.extend(draw(st.lists(st.one_of(SMALL, INT32), max_size=6)))
        req.token_ids.SetInParent()
    req.sampling.CopyFrom(draw(sampling()))
    if draw(st.booleans()):
        req.n = draw(st.one_of(SMALL, INT32))
    return req


def _code(fn) -> grpc.StatusCode:
    try:
        fn()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def stub(stack):
    with grpc.insecure_channel(stack.tokenizer_address) as channel:
        yield tok_grpc.TokenizerServiceStub(channel)


@pytest.mark.timeout(300)
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(req=generate_request())
def test_generate_answers_every_input_with_a_client_code(stub, req):
    code = _code(lambda: list(stub.Generate(req, timeout=60)))
    assert code in CLIENT_CODES, (code, req)


@pytest.mark.timeout(120)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    text=TEXT,
    add=st.one_of(st.none(), st.booleans()),
    ids=st.lists(st.one_of(SMALL, INT32), max_size=6),
    skip=st.booleans(),
    rid=TEXT,
)
def test_unary_calls_answer_every_input_with_a_client_code(stub, text, add, ids, skip, rid):
    tok = tokenizer_pb2.TokenizeRequest(text=text)
    if add is not None:
        tok.add_special_tokens = add
    assert _code(lambda: stub.Tokenize(tok, timeout=30)) in CLIENT_CODES
    detok = tokenizer_pb2.DetokenizeRequest(ids=ids, skip_special_tokens=skip)
    assert _code(lambda: stub.Detokenize(detok, timeout=30)) in CLIENT_CODES
    abort = tokenizer_pb2.AbortRequest(rid=rid)
    assert _code(lambda: stub.Abort(abort, timeout=30)) in CLIENT_CODES


def test_fuzzing_left_no_request_behind(stack):
    assert wait_for(lambda: registered(stack) == 0, timeout=10)
