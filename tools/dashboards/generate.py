"""Grafana dashboards as code: ``make dashboards`` writes k8s/monitoring/dashboards/*.json.

Three dashboards (overview, engine, GPU) over the services' Prometheus metrics, each with a
datasource variable and instance / model filters. Every panel query uses :data:`SEL` (the filter
matchers) on each series it selects; tests/observability checks that every query runs and returns
data against a real Prometheus scraping the real services.

Usage: python tools/dashboards/generate.py [--check]   (--check: fail if the JSON is stale)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos, VariableRefresh

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "k8s" / "monitoring" / "dashboards"
RULES = ROOT / "k8s" / "monitoring" / "rules" / "radixserve.rules.yml"
PROMETHEUS_RULE = ROOT / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'instance=~"$instance", model_name=~"$model_name"'
RI = "$__rate_interval"


def q(metric: str, extra: str = "") -> str:
    """A selector of ``metric`` with the dashboard filters (and ``extra`` matchers)."""
    return f"{metric}{{{SEL}{', ' + extra if extra else ''}}}"


def rate(metric: str, extra: str = "") -> str:
    return f"rate({q(metric, extra)}[{RI}])"


def quantile(p: float, hist: str, by: str = "") -> str:
    return (
        f"histogram_quantile({p}, sum by (le{', ' + by if by else ''}) ({rate(hist + '_bucket')}))"
    )


def mean(hist: str, by: str = "") -> str:
    grp = f" by ({by})" if by else ""
    return f"sum{grp} ({rate(hist + '_sum')}) / sum{grp} ({rate(hist + '_count')})"


class Layout:
    """Places panels left to right, 24 columns per row."""

    def __init__(self) -> None:
        self.x = self.y = 0

    def pos(self, w: int, h: int) -> GridPos:
        if self.x + w > 24:
            self.x, self.y = 0, self.y + h
        pos = GridPos(h=h, w=w, x=self.x, y=self.y)
        self.x += w
        return pos


def series(
    lay: Layout, title: str, targets: list[tuple[str, str]], unit: str, desc: str, w: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(desc)
        .datasource(DS)
        .unit(unit)
        .grid_pos(lay.pos(w, 8))
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .calcs([])
        )
    )
    for i, (expr, legend) in enumerate(targets):
        panel.with_target(
            prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i))
        )
    return panel


def single(lay: Layout, title: str, expr: str, unit: str, desc: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(desc)
        .datasource(DS)
        .unit(unit)
        .grid_pos(lay.pos(6, 4))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(prometheus.Dataquery().expr(expr).ref_id("A"))
    )


def variables(board: db.Dashboard) -> db.Dashboard:
    board.with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    for name, label in (("instance", "Instance"), ("model_name", "Model")):
        var = (
            db.QueryVariable(name)
            .label(label)
            .datasource(DS)
            .query(f"label_values(radixserve_build_info, {name})")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
        )
        # NOTE: "All" instances is the list of radixserve's own (Grafana joins the values), so
        # the gRPC and `up` panels skip other services of a shared Prometheus.
        board.with_variable(var if name == "instance" else var.all_value(".*"))
    return board


def board(uid: str, title: str) -> db.Dashboard:
    return variables(
        db.Dashboard(title).uid(uid).tags(["radixserve"]).refresh("10s").time("now-1h", "now")
    )


def overview() -> db.Dashboard:
    lay, d = Layout(), board("radixserve-overview", "radixserve / Overview")
    rq = "radixserve_frontend_requests_total"
    d.with_panel(
        single(lay, "Requests/s", f"sum({rate(rq)})", "reqps", "Requests ending per second")
    )
    d.with_panel(
        single(
            lay,
            "Output tokens/s",
            f"sum({rate('radixserve_frontend_generation_tokens_total')})",
            "short",
            "Tokens streamed to clients per second",
        )
    )
    d.with_panel(
        single(
            lay,
            "TTFT p50",
            quantile(0.5, "radixserve_time_to_first_token_seconds"),
            "s",
            "Median time to first token",
        )
    )
    d.with_panel(
        single(
            lay,
            "Running requests",
            f"sum({q('radixserve_frontend_running_requests')})",
            "short",
            "Requests in flight at the front door",
        )
    )
    d.with_panel(
        series(
            lay,
            "Requests by endpoint and finish reason",
            [(f"sum by (endpoint, finish_reason) ({rate(rq)})", "{{endpoint}} {{finish_reason}}")],
            "reqps",
            "Ended requests per second: stop/length are normal, abort is the client's, "
            "error a fault",
        )
    )
    d.with_panel(
        series(
            lay,
            "Errors",
            [
                (
                    f"sum by (endpoint, code) ({rate('radixserve_frontend_errors_total')})",
                    "HTTP {{code}} {{endpoint}}",
                ),
                (
                    "sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total"
                    f'{{instance=~"$instance", grpc_code!="OK"}}[{RI}]))',
                    "gRPC {{grpc_method}} {{grpc_code}}",
                ),
            ],
            "reqps",
            "HTTP error statuses of the front door and non-OK gRPC statuses of every service",
        )
    )
    for title, hist in (
        ("Time to first token", "radixserve_time_to_first_token_seconds"),
        ("Inter-token latency", "radixserve_inter_token_latency_seconds"),
        ("Time per output token", "radixserve_time_per_output_token_seconds"),
        ("End-to-end latency", "radixserve_e2e_request_latency_seconds"),
    ):
        d.with_panel(
            series(
                lay,
                title,
                [(quantile(p, hist), f"p{int(p * 100)}") for p in (0.5, 0.9, 0.99)],
                "s",
                f"Quantiles of {hist} over the rate window",
            )
        )
    d.with_panel(
        series(
            lay,
            "Token throughput",
            [
                (f"sum({rate('radixserve_frontend_prompt_tokens_total')})", "prompt"),
                (f"sum({rate('radixserve_frontend_generation_tokens_total')})", "generated"),
            ],
            "short",
            "Prompt tokens received and tokens generated per second",
        )
    )
    d.with_panel(
        series(
            lay,
            "Open requests and streams",
            [
                (
                    f"sum by (endpoint) ({q('radixserve_frontend_running_requests')})",
                    "running {{endpoint}}",
                ),
                (
                    f"sum by (endpoint) ({q('radixserve_frontend_open_streams')})",
                    "streams {{endpoint}}",
                ),
            ],
            "short",
            "Requests in flight and streaming responses open",
        )
    )
    d.with_panel(
        series(
            lay,
            "Tokenize / detokenize time",
            [
                (mean("radixserve_tokenize_seconds"), "encode (mean)"),
                (mean("radixserve_detokenize_seconds"), "decode (mean)"),
            ],
            "s",
            "Mean time of one tokenizer encode / decode call",
        )
    )
    d.with_panel(
        series(
            lay,
            "Services up",
            [('up{instance=~"$instance"}', "{{job}} {{instance}}")],
            "short",
            "1 while Prometheus scrapes the service",
        )
    )
    return d


def engine() -> db.Dashboard:
    lay, d = Layout(), board("radixserve-engine", "radixserve / Engine")
    d.with_panel(
        series(
            lay,
            "Queue",
            [
                (f"sum({q('radixserve_running_requests')})", "running"),
                (f"sum({q('radixserve_waiting_requests')})", "waiting"),
            ],
            "short",
            "Requests running and waiting at the scheduler",
        )
    )
    d.with_panel(
        series(
            lay,
            "Queue time",
            [
                (quantile(p, "radixserve_request_queue_time_seconds"), f"p{int(p * 100)}")
                for p in (0.5, 0.9, 0.99)
            ],
            "s",
            "Arrival at the scheduler to first admission",
        )
    )
    d.with_panel(
        series(
            lay,
            "KV cache usage",
            [
                (f"max({q('radixserve_kv_usage_ratio')})", "used by running requests"),
                (f"max({q('vllm:kv_cache_usage_perc')})", "GIE gauge"),
            ],
            "percentunit",
            "Fraction of KV slots held by running requests",
        )
    )
    d.with_panel(
        series(
            lay,
            "Prefix cache hit rate",
            [
                (
                    f"sum({rate('radixserve_prefix_cache_hits_total')}) / "
                    f"sum({rate('radixserve_prefix_cache_queries_total')})",
                    "hit rate (window)",
                ),
                (f"max({q('radixserve_cache_hit_rate')})", "since start"),
            ],
            "percentunit",
            "Admitted prompt tokens found in the radix cache",
        )
    )
    d.with_panel(
        series(
            lay,
            "Evictions and retractions",
            [
                (f"sum({rate('radixserve_evicted_tokens_total')})", "evicted tokens/s"),
                (f"sum({rate('radixserve_retractions_total')})", "retractions/s"),
            ],
            "short",
            "Cache evictions (tokens) and requests retracted to the queue",
        )
    )
    d.with_panel(
        series(
            lay,
            "New-token ratio",
            [(f"max({q('radixserve_new_token_ratio')})", "ratio")],
            "short",
            "Admission's estimate of the output still to come (falls on retraction)",
        )
    )
    d.with_panel(
        series(
            lay,
            "Batch size by mode",
            [(mean("radixserve_batch_size", "mode"), "{{mode}}")],
            "short",
            "Mean requests per step",
        )
    )
    d.with_panel(
        series(
            lay,
            "Per-step work",
            [
                (mean("radixserve_step_prefill_tokens"), "prefill tokens"),
                (mean("radixserve_step_decode_requests"), "decode requests"),
            ],
            "short",
            "Mean prefill tokens and decoding requests of a step that has them",
        )
    )
    d.with_panel(
        series(
            lay,
            "Step and scheduling time",
            [
                (quantile(0.5, "radixserve_step_seconds"), "step p50"),
                (quantile(0.99, "radixserve_step_seconds"), "step p99"),
                (mean("radixserve_schedule_seconds"), "schedule (mean)"),
            ],
            "s",
            "Time between step results, and time to build a step",
        )
    )
    d.with_panel(
        series(
            lay,
            "Scheduler throughput",
            [
                (f"sum({rate('radixserve_prompt_tokens_total')})", "prompt tokens/s"),
                (f"sum({rate('radixserve_generation_tokens_total')})", "generated tokens/s"),
            ],
            "short",
            "Tokens admitted and generated per second",
        )
    )
    d.with_panel(
        series(
            lay,
            "gRPC handling time p99",
            [
                (
                    "histogram_quantile(0.99, sum by (le, grpc_method) "
                    "(rate(grpc_server_handling_seconds_bucket"
                    f'{{instance=~"$instance", grpc_type="unary"}}[{RI}])))',
                    "{{grpc_method}}",
                )
            ],
            "s",
            "Unary RPCs of all services",
        )
    )
    return d


def gpu() -> db.Dashboard:
    lay, d = Layout(), board("radixserve-gpu", "radixserve / GPU")
    bw = "radixserve_worker_memory_bandwidth_utilization_ratio"
    mm = "radixserve_worker_matmul_utilization_ratio"
    d.with_panel(
        single(
            lay,
            "Memory bandwidth fraction",
            f"sum({rate('radixserve_worker_forward_bytes_total')}) / "
            f"sum({rate('radixserve_worker_forward_device_seconds_total')}) / "
            f"max({q('radixserve_worker_peak_memory_bandwidth_bytes_per_second')})",
            "percentunit",
            "Bytes moved over busy time, against the measured copy ceiling",
        )
    )
    d.with_panel(
        single(
            lay,
            "Matmul fraction",
            f"sum({rate('radixserve_worker_forward_flops_total')}) / "
            f"sum({rate('radixserve_worker_forward_device_seconds_total')}) / "
            f"max({q('radixserve_worker_peak_matmul_flops_per_second')})",
            "percentunit",
            "FLOPs over busy time, against the measured matmul ceiling",
        )
    )
    d.with_panel(
        single(
            lay,
            "Peak bandwidth",
            f"max({q('radixserve_worker_peak_memory_bandwidth_bytes_per_second')})",
            "Bps",
            "Copy bandwidth measured at start-up",
        )
    )
    d.with_panel(
        single(
            lay,
            "Peak matmul",
            f"max({q('radixserve_worker_peak_matmul_flops_per_second')})",
            "flops",
            "Matmul throughput measured at start-up",
        )
    )
    d.with_panel(
        series(
            lay,
            "Roofline by mode",
            [(mean(bw, "mode"), "bandwidth {{mode}}"), (mean(mm, "mode"), "matmul {{mode}}")],
            "percentunit",
            "Mean per-step achieved fraction of each ceiling: decode should ride "
            "the bandwidth line, large prefills the matmul line",
        )
    )
    d.with_panel(
        series(
            lay,
            "Forward time by mode",
            [
                (quantile(0.5, "radixserve_worker_step_seconds", "mode"), "p50 {{mode}}"),
                (quantile(0.99, "radixserve_worker_step_seconds", "mode"), "p99 {{mode}}"),
            ],
            "s",
            "Device time of one step (forward + sampling)",
        )
    )
    d.with_panel(
        series(
            lay,
            "CUDA-graph replays vs eager",
            [(f"sum by (path) ({rate('radixserve_worker_forwards_total')})", "{{path}}")],
            "ops",
            "Forwards per second by how they ran",
        )
    )
    d.with_panel(
        series(
            lay,
            "Memory by use",
            [(f"sum by (use) ({q('radixserve_worker_memory_bytes')})", "{{use}}")],
            "bytes",
            "Weights, KV pool, graph buffers, other reserved, free (GPU only: the last three)",
        )
    )
    d.with_panel(
        series(
            lay,
            "Worker tokens",
            [(f"sum by (kind) ({rate('radixserve_worker_tokens_total')})", "{{kind}}")],
            "short",
            "Tokens run through the model per second",
        )
    )
    d.with_panel(
        series(
            lay,
            "Step errors",
            [(f"sum({rate('radixserve_worker_step_errors_total')})", "errors/s")],
            "short",
            "Steps the worker rejected",
        )
    )
    return d


def render() -> dict[str, str]:
    """File name -> JSON text of each dashboard."""
    out = {}
    for name, build in (("overview", overview), ("engine", engine), ("gpu", gpu)):
        model = build().build()
        out[f"{name}.json"] = json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
    return out


def render_prometheus_rule() -> str:
    """The rules file wrapped as the prometheus-operator PrometheusRule the monitoring component
    applies (one source of truth: promtool tests the plain file, Kubernetes gets this)."""
    import yaml

    groups = yaml.safe_load(RULES.read_text())["groups"]
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "radixserve", "labels": {"app.kubernetes.io/name": "radixserve"}},
        "spec": {"groups": groups},
    }
    header = (
        "# Generated by `make dashboards` from k8s/monitoring/rules/radixserve.rules.yml; "
        "edit that.\n"
    )

    class Dumper(yaml.SafeDumper):
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
            super().increase_indent(flow, False)  # lists indented under their key (yamllint)

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None  # PromQL over several lines stays readable
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    body = yaml.dump(resource, Dumper=Dumper, sort_keys=False, width=1000, indent=2)
    return header + body


def outputs() -> dict[Path, str]:
    """Every generated file: the dashboards and the PrometheusRule."""
    files = {OUT / name: text for name, text in render().items()}
    files[PROMETHEUS_RULE] = render_prometheus_rule()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is stale")
    args = parser.parse_args(argv)
    stale = []
    OUT.mkdir(parents=True, exist_ok=True)
    for path, text in outputs().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale dashboards (run `make dashboards`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
