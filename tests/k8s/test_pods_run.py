"""The rendered cpu-demo pods run here: their own commands, args and env as local processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.k8s.manifests import ROOT


def _netns_prefix() -> list[str]:
    """A fresh network namespace (root, util-linux and iproute2): the manifest's fixed ports
    then never collide with anything else running on this machine."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if not (unshare and ip):
        return []
    probe = subprocess.run([unshare, "--net", ip, "link", "set", "lo", "up"], capture_output=True)
    if probe.returncode != 0:
        return []
    return [unshare, "--net", "sh", "-c", f'{ip} link set lo up && exec "$0" "$@"']


@pytest.mark.timeout(200)
def test_cpu_demo_pods_run_as_rendered() -> None:
    cmd = [*_netns_prefix(), sys.executable, "-m", "tests.k8s.podrun", "cpu-demo"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=190)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report (exit {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    report = json.loads(lines[-1])
    assert report["ok"], report["error"]
    checks = "\n".join(report["checks"])
    # 3 containers x 3 probes, 2 Services' 6 ports, the chat, 3 clean stops.
    assert len(report["checks"]) == 9 + 6 + 1 + 3, checks
    assert "readinessProbe grpc :50051 service='readiness' SERVING" in checks
    assert "Service/radixserve:http -> :8000 /v1/models" in checks
