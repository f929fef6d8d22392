"""Start worker, scheduler and tokenizer as three processes on free loopback ports.

The same processes ``make run`` starts, each with its own flags, so a benchmark measures the
services as they are deployed (including every gRPC hop).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Services:
    """Three running services and where to reach the front door."""

    procs: list[subprocess.Popen] = field(default_factory=list)
    grpc_address: str = ""
    base_url: str = ""

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def start_services(
    model: list[str],
    worker_args: list[str],
    env: dict[str, str] | None = None,
    timeout: float = 900.0,
) -> Services:
    """Starts the three services; ``model`` is the ``--model``/``--load-format`` flags."""
    from radixserve.launch import _ready

    host = "127.0.0.1"
    ports = {name: _free_port() for name in ("worker", "scheduler", "tokenizer", "http")}
    no_metrics = ["--metrics-port", "0"]
    cmds = [
        ["radixserve.worker", "--host", host, "--port", str(ports["worker"]), *model]
        + [*no_metrics, *worker_args],
        [
            "radixserve.scheduler",
            "--host",
            host,
            "--port",
            str(ports["scheduler"]),
            *no_metrics,
        ]
        + ["--worker-address", f"{host}:{ports['worker']}"],
        ["radixserve.tokenizer", "--host", host, "--port", str(ports["tokenizer"]), *model]
        + ["--http-port", str(ports["http"]), *no_metrics]
        + ["--scheduler-address", f"{host}:{ports['scheduler']}"],
    ]
    full_env = {**os.environ, "RADIXSERVE_LOG_LEVEL": "WARNING", **(env or {})}
    svc = Services(
        grpc_address=f"{host}:{ports['tokenizer']}", base_url=f"http://{host}:{ports['http']}"
    )
    for cmd in cmds:
        svc.procs.append(subprocess.Popen([sys.executable, "-m", *cmd], cwd=ROOT, env=full_env))
    deadline = time.monotonic() + timeout
    while not (_ready(svc.grpc_address) and _http_up(svc.base_url)):
        if time.monotonic() > deadline or any(p.poll() is not None for p in svc.procs):
            svc.stop()
            raise RuntimeError("services did not come up (see their logs above)")
        time.sleep(1)
    return svc


def _http_up(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/v1/models", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
