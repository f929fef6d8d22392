"""Issue 10: no client input makes the gRPC front door fail with INTERNAL or UNKNOWN.

Hypothesis builds GenerateRequest, Tokenize, Detokenize and Abort messages from any values the
wire allows (NaN and infinite floats, negative and huge integers, odd unicode, empty inputs).
Each answer is OK or a client-side code; afterwards the front door holds no request.
"""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, event, given, settings
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
WORDS = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)


def _either(valid: st.SearchStrategy, anything: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a valid value (so that requests also run), sometimes anything the wire allows."""
    return st.one_of(valid, valid, valid, anything)


FLOAT_FIELDS = {
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "frequency_penalty": st.floats(-2, 2),
    "presence_penalty": st.floats(-2, 2),
    "repetition_penalty": st.floats(0.5, 2),
}
INT_FIELDS = {"top_k": st.integers(-1, 50), "min_new_tokens": st.integers(0, 2),
              "top_logprobs": st.integers(0, 5)}  # fmt: skip


@st.composite
def sampling(draw) -> common_pb2.SamplingParams:
    sp = common_pb2.SamplingParams()
    for name, valid in FLOAT_FIELDS.items():
        if draw(st.booleans()):
            setattr(sp, name, draw(_either(valid, FLOATS)))
    for name, valid in INT_FIELDS.items():
        if draw(st.booleans()):
            setattr(sp, name, draw(_either(valid, st.one_of(SMALL, INT32))))
    # Small budgets when valid: a valid request runs for real. A plausible length that would run
    # long (hundreds of tokens on CI's CPU pass the 60 s deadline: DEADLINE_EXCEEDED, a test of
    # patience, not of input handling) is cut to 4; huge and negative values stay as probes.
    limit = draw(_either(st.integers(1, 4), INT32))
    sp.max_new_tokens = 4 if 4 < limit < 10**6 else limit
    if draw(st.booleans()):
        sp.seed = draw(st.integers(0, 2**64 - 1))
    token = _either(st.integers(0, 49151), INT32)
    sp.stop_token_ids.extend(draw(st.lists(token, max_size=3)))
    sp.stop.extend(draw(st.lists(_either(WORDS, TEXT), max_size=2)))
    for name in ("ignore_eos", "skip_special_tokens", "logprobs", "include_stop_str_in_output"):
        if draw(st.booleans()):
            setattr(sp, name, draw(st.booleans()))
    return sp


SCHEMA = '{"type": "object", "properties": {"x": {"type": "integer"}}}'


@st.composite
def tools(draw, chat: tokenizer_pb2.ChatInput) -> None:
    """Tools, a tool_choice and tool messages on ``chat``: valid ones (so that calls run) and
    anything the wire allows (unknown names and modes, parameters that are no JSON schema)."""
    names = _either(st.sampled_from(["f", "g"]), TEXT)
    for _ in range(draw(st.integers(0, 2))):
        params = _either(st.sampled_from(["", SCHEMA, '{"type": 5}']), TEXT)
        chat.tools.add(name=draw(names), description=draw(TEXT), parameters=draw(params))
    kind = draw(st.sampled_from(["none", "mode", "function_name"]))
    if kind == "mode":
        chat.tool_choice.mode = draw(_either(st.integers(0, 3), INT32))
    elif kind == "function_name":
        chat.tool_choice.function_name = draw(names)
    if draw(st.booleans()):
        chat.parallel_tool_calls = draw(st.booleans())
    if chat.messages and draw(st.booleans()):
        chat.messages[-1].tool_call_id = draw(TEXT)
        call = chat.messages[0].tool_calls.add(id=draw(TEXT), name=draw(names))
        call.arguments = draw(_either(st.just('{"x": 1}'), TEXT))


@st.composite
def generate_request(draw) -> tokenizer_pb2.GenerateRequest:
    req = tokenizer_pb2.GenerateRequest(rid=draw(st.one_of(st.just(""), TEXT)))
    kind = draw(st.sampled_from(["text", "chat", "token_ids", "none"]))
    if kind == "text":
        req.text = draw(_either(WORDS, TEXT))
    elif kind == "chat":
        roles = _either(st.sampled_from(["system", "user", "assistant"]), TEXT)
        for _ in range(draw(_either(st.integers(1, 3), st.just(0)))):
            req.chat.messages.add(role=draw(roles), content=draw(_either(WORDS, TEXT)))
        if not req.chat.messages:
            req.chat.SetInParent()
        if draw(st.booleans()):
            draw(tools(req.chat))
    elif kind == "token_ids":
        token = _either(st.integers(0, 49151), INT32)
        req.token_ids.ids.extend(
            draw(st.lists(token, min_size=draw(_either(st.just(1), st.just(0))), max_size=6))
        )
        req.token_ids.SetInParent()
    req.sampling.CopyFrom(draw(sampling()))
    if draw(st.booleans()):
        req.n = draw(_either(st.integers(1, 3), INT32))
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
    event(code.name)  # --hypothesis-show-statistics: how many ran and how many were refused
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
