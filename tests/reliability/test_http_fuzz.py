"""Issue 10: no client input makes the OpenAI HTTP API answer 5xx.

Hypothesis builds chat and completion bodies field by field from mostly valid values and
sometimes anything JSON carries in their place (wrong types, booleans where numbers belong,
huge and tiny numbers, odd unicode, nested junk), plus raw bodies that are not JSON objects.
Each answer is a success or a 4xx with OpenAI's error JSON; afterwards the front door holds no
request.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import registered, wait_for

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
WORDS = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),  # JSON itself has no NaN
    TEXT,
)
ANYTHING = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6,
)


def _either(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a valid value (so that requests also run), sometimes anything JSON allows."""
    return st.one_of(valid, valid, valid, ANYTHING)


# Valid values keep a running request short (max_tokens <= 3).
COMMON = {
    "max_tokens": st.integers(1, 3),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "top_k": st.integers(-1, 50),
    "min_p": st.floats(0, 1),
    "n": st.integers(1, 2),
    "seed": st.integers(0, 2**63 - 1),
    "stop": st.one_of(WORDS, st.lists(WORDS, max_size=2)),
    "frequency_penalty": st.floats(-2, 2),
    "presence_penalty": st.floats(-2, 2),
    "repetition_penalty": st.floats(0.5, 2),
    "logit_bias": st.dictionaries(st.integers(0, 49151).map(str), st.floats(-100, 100), max_size=2),
    "stream": st.booleans(),
    "ignore_eos": st.booleans(),
    "regex": st.sampled_from(["[ab]+", "(yes|no)"]),
    "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"}]),
}
MESSAGE = st.fixed_dictionaries(
    {"role": _either(st.sampled_from(["system", "user", "developer"])), "content": _either(WORDS)}
)


@st.composite
def body(draw, endpoint: str) -> dict:
    out: dict = {}
    if endpoint == "chat":
        out["messages"] = draw(_either(st.lists(MESSAGE, min_size=1, max_size=2)))
    else:
        out["prompt"] = draw(
            _either(st.one_of(WORDS, st.lists(st.integers(0, 49151), min_size=1, max_size=4)))
        )
    for name, valid in COMMON.items():
        if draw(st.integers(0, 4)) == 0:
            out[name] = draw(_either(valid))
    limit = out.get("max_tokens")
    if limit is None:
        # Absent or null means "up to the context" (OpenAI's meaning): the real model on a slow
        # CPU can take minutes for that, which is a test of patience, not of input handling.
        out["max_tokens"] = 2
    elif type(limit) is int and 3 < limit < 10**6:
        # A plausible length that would run long; huge and negative values stay (they are 400s).
        out["max_tokens"] = 3
    if draw(st.integers(0, 9)) == 0:  # an unknown field
        out[draw(WORDS)] = draw(ANYTHING)
    return out


@pytest.fixture(scope="module")
def client(stack):
    with httpx.Client(base_url=f"{stack.http_url}/v1", timeout=60) as c:
        yield c


def _check(resp: httpx.Response) -> None:
    event(str(resp.status_code))
    assert resp.status_code < 500, (resp.status_code, resp.text[:300])
    if resp.status_code >= 400:
        assert "error" in resp.json(), resp.text[:300]


@pytest.mark.timeout(300)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(endpoint=st.sampled_from(["chat", "completions"]), data=st.data())
def test_request_bodies_never_get_a_5xx(client, endpoint, data):
    payload = data.draw(body(endpoint))
    path = "/chat/completions" if endpoint == "chat" else "/completions"
    with client.stream("POST", path, json=payload) as resp:
        resp.read()
    _check(resp)


@pytest.mark.timeout(120)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(["/chat/completions", "/completions"]),
    raw=st.one_of(
        ANYTHING.map(json.dumps),  # JSON, but not an object of the right shape
        st.binary(max_size=40),  # not JSON, maybe not UTF-8
    ),
)
def test_raw_bodies_never_get_a_5xx(client, path, raw):
    data = raw if isinstance(raw, bytes) else raw.encode()
    _check(client.post(path, content=data, headers={"content-type": "application/json"}))


def test_nothing_stays_registered(stack, client):
    """Runs after the fuzzing in this module: every request was forgotten on every path."""
    assert wait_for(lambda: registered(stack) == 0, timeout=10)
