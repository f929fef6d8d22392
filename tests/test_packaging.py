"""The installable package takes no one else's name: one top-level ``radixserve`` namespace."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(ROOT),
            "-w",
            str(out),
        ],
        check=True,
        cwd=out,
        timeout=300,
    )
    (found,) = out.glob("radixserve-*.whl")
    return found


def test_wheel_has_one_top_level_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"radixserve"}
    for needed in (
        "radixserve/services/worker/engine.py",
        "radixserve/services/scheduler/radix_cache.py",
        "radixserve/kernels/rms_norm.py",
        "radixserve/v1/worker_pb2.py",
    ):
        assert needed in names, needed
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "radixserve = radixserve.services.client.__main__:main" in (
        zipfile.ZipFile(wheel).read(entry).decode()
    )


def test_installed_wheel_imports_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    code = (
        "import radixserve.services.scheduler.radix_cache as m, radixserve.v1.worker_pb2 as w;"
        "print(m.__file__); print(w.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=True,
    ).stdout.split()
    assert all(path.startswith(str(target)) for path in out), out
