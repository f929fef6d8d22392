"""Issue 23, item 3: profiling is an admin endpoint (behind the API key), writes only under the
worker's --profile-dir, within a step and a size limit, and writes its trace off the step loop."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future

import httpx
import pytest

from radixserve.worker.profiling import ProfileLimits, StepProfiler, profile_dir
from tests.reliability.conftest import WORKER
from tests.stack import start_stack

KEY = "admin-k3y"


@pytest.fixture(scope="module")
def admin_stack(runner, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("profiles"))
    stack = start_stack(worker=WORKER, runner=runner, tokenizer={"api_key": KEY})
    # NOTE: the shared runner's stack: the worker's limits are set on its servicer directly.
    servicer = stack.handles[0].servicer
    servicer.profile_limits = ProfileLimits(root, max_steps=8, max_bytes=64 * 1024 * 1024)
    yield stack, root
    stack.stop()


def test_profiling_without_an_api_key_is_refused(stack):
    for path in ("/start_profile", "/stop_profile"):
        resp = httpx.post(f"{stack.http_url}{path}", json={}, timeout=30)
        assert resp.status_code == 403, resp.text
        assert "api key" in resp.text.lower()


def test_profiling_writes_only_under_the_server_directory(admin_stack):
    stack, root = admin_stack
    http = httpx.Client(
        base_url=stack.http_url, timeout=120, headers={"authorization": f"Bearer {KEY}"}
    )
    assert httpx.post(f"{stack.http_url}/start_profile", json={}, timeout=30).status_code == 401
    for bad in ("/etc", "../escape", "a/b", "..", "x" * 65):
        resp = http.post("/start_profile", json={"output_dir": bad})
        assert resp.status_code == 400 and "output_dir" in resp.text, (bad, resp.text)
    resp = http.post("/start_profile", json={"num_steps": 9})  # over max_profile_steps
    assert resp.status_code == 400 and "num_steps" in resp.text
    started = http.post("/start_profile", json={"output_dir": "mine"})
    assert started.status_code == 200, started.text
    assert started.json()["engines"][0]["output_dir"] == os.path.join(root, "mine")
    body = {"model": stack.handles[-1].frontend.model_name, "prompt": "Hi", "max_tokens": 12}
    assert http.post("/v1/completions", json=body).status_code == 200
    stopped = http.post("/stop_profile")  # 13 steps > 8: it stopped by itself at 8
    assert stopped.status_code == 200, stopped.text
    engine = stopped.json()["engines"][0]
    assert engine["num_steps"] == 8
    assert engine["trace_path"].startswith(os.path.join(root, "mine") + os.sep)
    assert not os.path.exists("/etc/worker-trace")


def test_an_oversized_trace_is_deleted_and_reported(admin_stack):
    stack, root = admin_stack
    servicer = stack.handles[0].servicer
    limits = servicer.profile_limits
    servicer._profiler = StepProfiler(ProfileLimits(root, max_steps=8, max_bytes=100))
    http = httpx.Client(
        base_url=stack.http_url, timeout=120, headers={"authorization": f"Bearer {KEY}"}
    )
    try:
        assert http.post("/start_profile", json={"output_dir": "big"}).status_code == 200
        body = {"model": stack.handles[-1].frontend.model_name, "prompt": "Hi", "max_tokens": 3}
        assert http.post("/v1/completions", json=body).status_code == 200
        stopped = http.post("/stop_profile")
        assert stopped.status_code == 413 and "over the limit" in stopped.text, stopped.text
        assert os.listdir(os.path.join(root, "big")) == []
    finally:
        servicer._profiler = StepProfiler(limits)


def test_output_dir_is_a_name_inside_the_root():
    limits = ProfileLimits("/srv/profiles")
    assert profile_dir(limits, "") == "/srv/profiles"
    assert profile_dir(limits, "run-1.a") == "/srv/profiles/run-1.a"
    for bad in ("/tmp", "../x", "a/b", "..", ".hidden", "x" * 65):
        with pytest.raises(ValueError, match="output_dir"):
            profile_dir(limits, bad)


def test_stop_writes_the_trace_off_the_calling_thread(tmp_path):
    """The export (seconds for a long window) runs on the profiler's thread: ``stop`` returns a
    future at once, so a step that ends the window does not stall the step loop."""
    prof = StepProfiler(ProfileLimits(str(tmp_path)))
    gate = threading.Event()

    class SlowProfile:
        def stop(self) -> None:
            pass

        def export_chrome_trace(self, path: str) -> None:
            gate.wait(10)
            with open(path, "w") as f:
                f.write("{}")

    prof.prof, prof.remove, prof.dir, prof.steps = SlowProfile(), lambda: None, str(tmp_path), 3
    start = time.perf_counter()
    written = prof.stop()
    assert isinstance(written, Future) and time.perf_counter() - start < 0.5
    assert not written.done()
    gate.set()
    path, steps = written.result(10)
    assert steps == 3 and os.path.dirname(path) == str(tmp_path)
