"""The queries of the committed dashboards and rules, and the series selectors inside a query."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "k8s" / "monitoring" / "dashboards"
RULES = ROOT / "k8s" / "monitoring" / "rules" / "radixserve.rules.yml"
# Grafana's variables as an "All" selection and a rate window over a 1 s scrape.
VARIABLES = {"$__rate_interval": "30s", "$instance": ".*", "$model_name": ".*"}

_CLAUSES = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGES = re.compile(r"\[[^\]]*\]|\boffset\s+\S+")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
_KEYWORDS = {"and", "or", "unless", "bool", "group_left", "group_right", "inf", "nan"}


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def selectors(expr: str) -> list[str]:
    """Every vector selector (``name{matchers}``) in ``expr``; functions and grouping labels
    are not selectors. Enough PromQL for the expressions this project writes."""
    text = _RANGES.sub("", _CLAUSES.sub("", expr))
    found = []
    for m in _SELECTOR.finditer(text):
        name, matchers = m.group(1), m.group(2)
        rest = text[m.end() :].lstrip()
        if name in _KEYWORDS or (not matchers and rest.startswith("(")):
            continue
        found.append(name + (matchers or ""))
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expr) of every panel target of every committed dashboard."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets") or []:
                out.append((f"{path.stem}: {panel['title']}", target["expr"]))
    return out


def dashboard_variables() -> list[tuple[str, str]]:
    """(where, query) of every query variable (``label_values(metric, label)``)."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for var in json.loads(path.read_text())["templating"]["list"]:
            if var["type"] == "query":
                out.append((f"{path.stem}: ${var['name']}", var["query"]))
    return out


def rule_queries() -> list[tuple[str, str, bool]]:
    """(name, expr, is_alert) of every rule."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [
        (r.get("alert") or r["record"], r["expr"], "alert" in r) for g in groups for r in g["rules"]
    ]
