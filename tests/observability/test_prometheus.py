"""Against the real thing: Debian's Prometheus scrapes the three in-process services (embedded
model) while a short workload runs; then every dashboard and rule expression is evaluated through
Prometheus' HTTP API, every series it selects must be present, and every panel must show data.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from radixserve.v1 import common_pb2, tokenizer_pb2
from radixserve.v1 import tokenizer_pb2_grpc as tok_grpc
from tests.observability.promql import (
    RULES,
    dashboard_queries,
    dashboard_variables,
    rule_queries,
    selectors,
    substitute,
)
from tests.observability.tools import need
from tests.stack import Stack, free_port

pytestmark = pytest.mark.timeout(300)
JOBS = ("tokenizer", "scheduler", "worker")
# The Gateway API Inference Extension's documented names carry a colon, which promtool's linter
# flags; those three and nothing else may be reported.
GIE_NAMES = ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc")


@dataclass
class Served:
    stack: Stack
    url: str  # Prometheus
    scrapes: dict[str, str]  # service -> its /metrics text after the workload
    before: dict[str, str] = field(default_factory=dict)  # ... and before it (a shared stack)

    def delta(self, job: str, name: str, **labels: str) -> float:
        """How much the workload moved ``name`` (other tests share the stack)."""
        return _value(self.scrapes[job], name, **labels) - _value(self.before[job], name, **labels)

    def api(self, path: str, **params: str) -> dict:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as exc:  # 400/422: a bad expression; show Prometheus' word
            body = json.load(exc)
        assert body["status"] == "success", (path, params, body.get("error"))
        return body["data"]


def _config(tmp: Path, stack: Stack) -> Path:
    jobs = "".join(
        f"  - job_name: radixserve-{name}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{stack.metrics_ports[name]}']}}]\n"
        for name in JOBS
    )
    path = tmp / "prometheus.yml"
    path.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        f"scrape_configs:\n{jobs}"
    )
    return path


def _workload(stack: Stack) -> None:
    """Chat (streamed) and completions over HTTP, gRPC Generate, a shared prefix (cache hits),
    an HTTP 400 and a gRPC INVALID_ARGUMENT (so error series exist)."""
    client = openai.OpenAI(base_url=f"{stack.http_url}/v1", api_key="unused", max_retries=0)
    model = client.models.list().data[0].id
    prefix = "The quick brown fox jumps over the lazy dog. " * 4
    for i in range(2):
        client.completions.create(model=model, prompt=prefix + str(i), max_tokens=4)
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, stream=True
    )
    assert len([c for c in stream]) > 1
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=model, prompt="x", max_tokens=-1)
    with grpc.insecure_channel(stack.tokenizer_address) as channel:
        stub = tok_grpc.TokenizerServiceStub(channel)
        sampling = common_pb2.SamplingParams(temperature=0, max_new_tokens=4)
        req = tokenizer_pb2.GenerateRequest(text="Hello", sampling=sampling)
        assert list(stub.Generate(req, timeout=60))
        bad = tokenizer_pb2.GenerateRequest(
            text="Hello", sampling=common_pb2.SamplingParams(temperature=-1)
        )
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Generate(bad, timeout=60))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _scrape(stack: Stack, name: str) -> str:
    url = f"http://127.0.0.1:{stack.metrics_ports[name]}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, obs_stack: Stack) -> Iterator[Served]:
    binary = need("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    stack = obs_stack
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={_config(tmp, stack)}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "prometheus.log").open("w"),
    )
    served = Served(stack, f"http://127.0.0.1:{port}", {})
    try:
        _wait(lambda: _ready(served.url), 30, "Prometheus to start")
        served.before = {name: _scrape(stack, name) for name in JOBS}
        _workload(stack)
        served.scrapes = {name: _scrape(stack, name) for name in JOBS}
        # Ingested: Prometheus holds the workload's last count, and rules have run on it.
        total = _total(served.scrapes["tokenizer"], "radixserve_frontend_requests_total")
        _wait(lambda: _prom_total(served) >= total, 30, "the workload's scrape")
        time.sleep(2.5)  # two more scrapes and rule evaluations, so every rate has two points
        yield served
    finally:
        proc.terminate()
        proc.wait(10)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def _total(text: str, name: str) -> float:
    families = text_string_to_metric_families(text)
    return sum(s.value for f in families for s in f.samples if s.name == name)


def _prom_total(served: Served) -> float:
    result = served.api("query", query="sum(radixserve_frontend_requests_total)")["result"]
    return float(result[0]["value"][1]) if result else 0.0


def _scraped_names(served: Served) -> set[str]:
    names = {"up"}  # Prometheus' own series per target
    for text in served.scrapes.values():
        names |= {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    return names


def test_targets_up(served: Served) -> None:
    result = served.api("query", query='up{job=~"radixserve-.*"}')["result"]
    assert sorted((r["metric"]["job"], r["value"][1]) for r in result) == [
        (f"radixserve-{name}", "1") for name in sorted(JOBS)
    ]


def test_promtool_check_metrics(served: Served) -> None:
    for name, text in served.scrapes.items():
        out = subprocess.run(
            [need("promtool"), "check", "metrics"], input=text, capture_output=True, text=True
        )
        problems = [p for p in (out.stdout + out.stderr).splitlines() if p.strip()]
        unexpected = [p for p in problems if not p.startswith(GIE_NAMES)]
        assert not unexpected, f"{name}: {unexpected}"
        assert out.returncode == 0 or problems, out


def test_no_created_series_and_model_label(served: Served) -> None:
    for name, text in served.scrapes.items():
        assert "_created" not in text, name
        families = list(text_string_to_metric_families(text))
        radix = [s for f in families for s in f.samples if f.name.startswith("radixserve")]
        assert radix and all(s.labels.get("model_name") for s in radix), name


def _check_selectors(served: Served, where: str, expr: str, scraped: set[str]) -> None:
    recorded = {name for name, _, is_alert in rule_queries() if not is_alert}
    start = str(time.time() - 600)
    for sel in selectors(expr):
        name = sel.split("{")[0]
        assert name in recorded or name in scraped, f"{where}: {name} is not in any scrape"
        series = served.api("series", **{"match[]": sel, "start": start})
        assert series, f"{where}: no series for {sel}"


def test_every_dashboard_query_runs_and_has_data(served: Served) -> None:
    scraped = _scraped_names(served)
    queries = dashboard_queries()
    assert queries
    for where, expr in queries:
        expr = substitute(expr)
        _check_selectors(served, where, expr, scraped)
        result = served.api("query", query=expr)["result"]
        assert result, f"{where}: no data for {expr}"


def test_dashboard_variables_list_values(served: Served) -> None:
    for where, query in dashboard_variables():
        metric, label = query.removeprefix("label_values(").rstrip(")").split(", ")
        values = served.api(f"label/{label}/values", **{"match[]": metric})
        assert values, where


def test_every_rule_expression_runs(served: Served) -> None:
    """Recording rules and alert conditions evaluate; their selectors all select something (an
    alert's condition itself is empty while it does not fire)."""
    scraped = _scraped_names(served)
    for name, expr, is_alert in rule_queries():
        _check_selectors(served, name, expr, scraped)
        result = served.api("query", query=expr)["result"]
        if not is_alert:
            assert result, f"{name}: recorded nothing"
    groups = served.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == len(rule_queries())
    assert all(r["health"] == "ok" for r in rules), [r.get("lastError") for r in rules]


def _value(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_workload_moved_the_right_series(served: Served) -> None:
    """The workload's events land under the right labels (not just somewhere)."""
    work, tok = served.scrapes["worker"], "tokenizer"
    d = served.delta
    assert d(tok, "radixserve_frontend_requests_total", endpoint="completions") == 2
    assert d(tok, "radixserve_frontend_requests_total", endpoint="chat") == 1
    assert d(tok, "radixserve_frontend_requests_total", endpoint="grpc_generate") == 1
    assert d(tok, "radixserve_frontend_errors_total", endpoint="completions", code="400") == 1
    assert _value(served.scrapes[tok], "radixserve_frontend_open_streams") == 0  # all closed
    assert d(tok, "radixserve_time_to_first_token_seconds_count") == 4
    assert d(tok, "radixserve_tokenize_seconds_count") >= 4
    generate = {"grpc_method": "Generate", "grpc_service": "radixserve.v1.TokenizerService"}
    assert d(tok, "grpc_server_handled_total", grpc_code="INVALID_ARGUMENT", **generate) == 1
    assert d(tok, "grpc_server_handled_total", grpc_code="OK", **generate) == 1
    assert d("scheduler", "radixserve_prefix_cache_hits_total") > 0  # the shared prefix
    assert d("scheduler", "radixserve_request_queue_time_seconds_count") == 4
    # The tokenizer's one Connect stream opened with the (shared) stack, before the workload.
    sched = served.scrapes["scheduler"]
    assert _value(sched, "grpc_server_started_total", grpc_method="Connect") == 1
    assert d("worker", "radixserve_worker_forwards_total", path="eager") > 0
    decode = _value(work, "radixserve_worker_memory_bandwidth_utilization_ratio_sum", mode="decode")
    assert (
        0
        < decode
        / _value(work, "radixserve_worker_memory_bandwidth_utilization_ratio_count", mode="decode")
        < 1.5
    )
