"""What the services read (flags, environment variables), and what a container passes them."""

from __future__ import annotations

import dataclasses

from services.common.config import env_name
from services.scheduler.config import SchedulerConfig
from services.tokenizer.config import TokenizerConfig
from services.worker.config import WorkerConfig
from tests.k8s.manifests import Doc

CONFIGS: dict[str, type] = {
    "services.tokenizer": TokenizerConfig,
    "services.scheduler": SchedulerConfig,
    "services.worker": WorkerConfig,
}
# Variables read outside the config dataclasses (services/common/logs.py, server.py, and the
# worker's elementwise-ops switch in services/worker/layers/ops.py).
COMMON_ENV = {"RADIXSERVE_LOG_LEVEL", "RADIXSERVE_LOG_FORMAT", "RADIXSERVE_SWITCH_INTERVAL"}
EXTRA_ENV = {"services.worker": {"RADIXSERVE_OPS"}}
# Left unset on purpose (see k8s/base/config/worker.env).
UNSET_ON_PURPOSE = {"RADIXSERVE_OPS"}
# NOTE: flags other branches add (issue 8: --tp/--nnodes/--node-rank on the worker; issue 10:
# --drain-seconds on the tokenizer). The tp and multinode overlays use them; cpu-demo must not.
PENDING = {
    "services.worker": {"tp", "nnodes", "node_rank"},
    "services.tokenizer": {"drain_seconds"},
}


def module_of(container: Doc) -> str | None:
    """``services.x`` when the container runs ``python -m services.x``."""
    cmd = container.get("command", [])
    if len(cmd) >= 3 and cmd[0] == "python" and cmd[1] == "-m" and cmd[2] in CONFIGS:
        return cmd[2]
    return None


def fields(module: str, pending: bool = False) -> set[str]:
    names = {f.name for f in dataclasses.fields(CONFIGS[module])}
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
