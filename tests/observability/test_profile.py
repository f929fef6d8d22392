"""Profiling a live engine over HTTP (front door -> scheduler -> worker), no restart: the Chrome
trace holds the step, phase and layer ranges; bad use is a clear error and serving goes on."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.stack import Stack, start_stack

pytestmark = pytest.mark.timeout(300)
KEY = "profile-admin-key"  # profiling is an admin endpoint: only behind the API key (issue 23)


@pytest.fixture(scope="module")
def admin_stack(tmp_path_factory) -> Iterator[Stack]:
    root = str(tmp_path_factory.mktemp("profiles"))
    running = start_stack(
        worker={"num_slots": 2048, "max_rows": 8, "profile_dir": root},
        tokenizer={"api_key": KEY},
    )
    running.profile_root = root  # type: ignore[attr-defined]
    yield running
    running.stop()


def _http(stack: Stack) -> httpx.Client:
    headers = {"authorization": f"Bearer {KEY}"}
    return httpx.Client(base_url=stack.http_url, timeout=120, headers=headers)


def _generate(stack: Stack, tokens: int) -> None:
    client = openai.OpenAI(base_url=f"{stack.http_url}/v1", api_key=KEY, max_retries=0)
    model = client.models.list().data[0].id
    out = client.completions.create(model=model, prompt="Profile me", max_tokens=tokens)
    assert out.choices[0].text is not None


def _names(path: str) -> set[str]:
    with open(path) as f:
        trace = json.load(f)
    return {e.get("name", "") for e in trace["traceEvents"]}


def test_start_stop_profile_writes_trace_with_ranges(admin_stack: Stack) -> None:
    obs_stack = admin_stack
    http = _http(obs_stack)
    started = http.post("/start_profile", json={"output_dir": "run1"})
    assert started.status_code == 200, started.text
    root = obs_stack.profile_root  # type: ignore[attr-defined]
    assert started.json()["engines"][0]["output_dir"] == f"{root}/run1"
    again = http.post("/start_profile", json={})
    assert again.status_code == 409 and "already running" in again.text
    _generate(obs_stack, 3)
    stopped = http.post("/stop_profile")
    assert stopped.status_code == 200, stopped.text
    engine = stopped.json()["engines"][0]
    assert engine["num_steps"] >= 3  # a prefill and two decodes at least
    names = _names(engine["trace_path"])
    assert any(n.startswith("step ") and "prefill" in n for n in names)
    assert any(n.startswith("step ") and "decode" in n for n in names)
    assert {"forward", "sample", "layer0", "layer0.self_attn", "layer0.mlp"} <= names
    assert http.post("/stop_profile").status_code == 409
    _generate(obs_stack, 2)  # the hooks are gone and serving goes on


def test_profile_stops_by_itself_after_num_steps(admin_stack: Stack) -> None:
    obs_stack = admin_stack
    http = _http(obs_stack)
    body = {"output_dir": "run2", "num_steps": 2}
    assert http.post("/start_profile", json=body).status_code == 200
    _generate(obs_stack, 4)
    stopped = http.post("/stop_profile")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["engines"][0]["num_steps"] == 2
    assert http.post("/stop_profile").status_code == 409


@pytest.mark.parametrize("body", [{"num_steps": -1}, {"output_dir": 3}, {"steps": 1}])
def test_bad_profile_body_is_400_naming_the_field(admin_stack: Stack, body: dict) -> None:
    resp = _http(admin_stack).post("/start_profile", json=body)
    assert resp.status_code == 400, resp.text
    assert next(iter(body)) in resp.text
