"""yamllint is clean on k8s/, and checkov passes on every rendered overlay (the checks it skips
are listed, each with its reason, in tests/k8s/checkov.yaml)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.k8s.manifests import K8S, OVERLAYS, ROOT, render, tool

HERE = Path(__file__).parent


@pytest.mark.timeout(60)
def test_yamllint_is_clean() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "yamllint", "-f", "parsable", "-c", str(HERE / "yamllint.yaml")]
        + [str(K8S), str(HERE / "yamllint.yaml"), str(HERE / "checkov.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.timeout(240)
def test_checkov_passes_on_every_rendered_overlay(tmp_path: Path) -> None:
    # One checkov run over all renders: its start-up costs more than the checks.
    for target in [*OVERLAYS, "gpu+opt-in", "multinode+opt-in"]:
        text = yaml.safe_dump_all(render(target), sort_keys=False)
        (tmp_path / f"{target.replace('+', '-')}.yaml").write_text(text)
    out = subprocess.run(
        [tool("checkov"), "-d", str(tmp_path), "--config-file", str(HERE / "checkov.yaml")]
        + ["-o", "json"],
        capture_output=True,
        text=True,
        timeout=230,
        cwd=ROOT,
    )
    reports = json.loads(out.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{f['check_id']} {f['check_name']}: {f['resource']} ({f['file_path']})"
        for r in reports
        for f in r["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert sum(r["summary"]["passed"] for r in reports) > 100, out.stdout[:2000]
    assert out.returncode == 0, out.stderr[-2000:]
