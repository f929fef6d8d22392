"""The committed dashboards are what the generator writes; the rules pass promtool's checks and
unit tests; the selector extraction the Prometheus test relies on reads PromQL right."""

from __future__ import annotations

import subprocess

from tests.observability.promql import RULES, dashboard_queries, rule_queries, selectors
from tests.observability.tools import need
from tools.dashboards.generate import outputs


def test_committed_dashboards_are_current():
    for path, text in outputs().items():
        assert path.read_text() == text, f"{path.name} is stale: run `make dashboards`"


def test_dashboards_have_datasource_and_filters():
    queries = dashboard_queries()
    assert len(queries) >= 30
    for where, expr in queries:
        for sel in selectors(expr):
            if not sel.startswith(("up{", "grpc_server_")):
                assert 'instance=~"$instance"' in sel and "model_name" in sel, (where, sel)


def test_selectors_of_promql():
    expr = (
        'histogram_quantile(0.9, sum by (le, model_name) (rate(a_bucket{x="1", y=~"b,c"}[5m])))'
        " / on (model_name) group_left sum without (le) (b_total) > bool 2 and c:rec offset 5m"
    )
    assert selectors(expr) == ['a_bucket{x="1", y=~"b,c"}', "b_total", "c:rec"]


def test_promtool_check_rules():
    out = subprocess.run(
        [need("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rule_queries())} rules found" in out.stdout


def test_promtool_unit_tests_cover_every_alert():
    tests = RULES.with_name("radixserve.rules.test.yml")
    out = subprocess.run(
        [need("promtool"), "test", "rules", tests.name],
        capture_output=True,
        text=True,
        cwd=RULES.parent,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    alerts = {name for name, _, is_alert in rule_queries() if is_alert}
    assert alerts and all(f"alertname: {a}" in tests.read_text() for a in alerts)
