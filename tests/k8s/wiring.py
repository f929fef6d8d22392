"""What the services read (flags, environment variables), and what a container passes them."""

from __future__ import annotations

import argparse

from radixserve.common.config import add_config_arguments, env_name
from radixserve.common.security import SecurityConfig
from radixserve.scheduler.config import SchedulerConfig
from radixserve.tokenizer.config import TokenizerConfig
from radixserve.worker.config import WorkerConfig
from tests.k8s.manifests import Doc

TOKENIZER = "radixserve.tokenizer"
SCHEDULER = "radixserve.scheduler"
WORKER = "radixserve.worker"
CONFIGS: dict[str, type] = {
    "radixserve.tokenizer": TokenizerConfig,
    "radixserve.scheduler": SchedulerConfig,
    "radixserve.worker": WorkerConfig,
}
# Variables read outside the config dataclasses (services/radixserve/common/logs.py, server.py,
# metrics.py, and the worker's elementwise-ops switch in services/radixserve/worker/layers/ops.py).
COMMON_ENV = {
    "RADIXSERVE_LOG_LEVEL",
    "RADIXSERVE_LOG_FORMAT",
    "RADIXSERVE_SWITCH_INTERVAL",
    "RADIXSERVE_METRICS_HOST",  # services/radixserve/common/metrics.py
}
EXTRA_ENV = {"radixserve.worker": {"RADIXSERVE_OPS"}}
# Left unset on purpose (see k8s/base/config/worker.env).
UNSET_ON_PURPOSE = {
    "RADIXSERVE_OPS",
    "RADIXSERVE_API_KEY",
    "RADIXSERVE_API_KEY_FILE",
    # Security (every service, services/radixserve/common/security.py): secrets and their paths
    # come per deployment; the manifests pass --auth-token-file (a mounted Secret).
    "RADIXSERVE_TLS_CERT",
    "RADIXSERVE_TLS_KEY",
    "RADIXSERVE_TLS_CA",
    "RADIXSERVE_TLS_SERVER_NAME",
    "RADIXSERVE_AUTH_TOKEN",
    "RADIXSERVE_AUTH_TOKEN_FILE",
    "RADIXSERVE_ALLOW_UNAUTHENTICATED",
}
# NOTE: settings other branches add (issue 8: tensor parallel; issue 10: limits, drain, worker
# recovery; issue 11: CORS). Their variables may sit in the ConfigMaps today (unread until those
# branches land); their flags only in overlays that need the new code, never in cpu-demo.
PENDING: dict[str, set[str]] = {}  # settings of work not yet merged (none now)


def module_of(container: Doc) -> str | None:
    """``services.x`` when the container runs ``python -m radixserve.x``."""
    cmd = container.get("command", [])
    if len(cmd) >= 3 and cmd[0] == "python" and cmd[1] == "-m" and cmd[2] in CONFIGS:
        return cmd[2]
    return None


def fields(module: str, pending: bool = False) -> set[str]:
    """The service's flag names (as field names), as its own parser builds them."""
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, CONFIGS[module])
    add_config_arguments(parser, SecurityConfig)  # every service parses both (run_service)
    names = {a.dest for a in parser._actions if a.dest != "help"}
    return names | (PENDING.get(module, set()) if pending else set())


def env_names(module: str, pending: bool = False) -> set[str]:
    extra = COMMON_ENV | EXTRA_ENV.get(module, set())
    return {env_name(f) for f in fields(module, pending)} | extra


def flags(container: Doc) -> dict[str, str]:
    """``--name=value`` args as ``{"name": "value"}`` (every arg must have that form)."""
    out: dict[str, str] = {}
    for arg in container.get("args", []):
        if not arg.startswith("--") or "=" not in arg:
            raise AssertionError(f"arg {arg!r}: write flags as --name=value")
        name, _, value = arg[2:].partition("=")
        out[name.replace("-", "_")] = value
    return out
