"""The layout and the installs: every import name is its path under one source root, nothing at
the repository root hides an installed distribution, and the lock agrees with the projects."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
# The two distributions this repository builds: (project folder, its one top-level package).
DISTS = {
    "radixserve": (ROOT, "radixserve"),
    "radixserve-kernels": (ROOT / "kernels", "radixserve_kernels"),
}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    found = {}
    for name, (project, _) in DISTS.items():
        # NOTE: setuptools' build/ keeps modules that a move deleted and would pack them again.
        shutil.rmtree(project / "build", ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
            + [str(project), "-w", str(out)],
            check=True,
            cwd=out,
            timeout=300,
        )
        (found[name],) = out.glob(f"{name.replace('-', '_')}-*.whl")
    return found


def test_each_wheel_has_one_top_level_name(wheels: dict[str, Path]) -> None:
    for name, (_, package) in DISTS.items():
        names = zipfile.ZipFile(wheels[name]).namelist()
        tops = {n.split("/")[0] for n in names}
        assert {t for t in tops if not t.endswith(".dist-info")} == {package}, name
    names = zipfile.ZipFile(wheels["radixserve"]).namelist()
    for needed in (
        "radixserve/worker/engine.py",
        "radixserve/scheduler/radix_cache.py",
        "radixserve/v1/worker_pb2.py",
        "radixserve/v1/worker_pb2.pyi",
    ):
        assert needed in names, needed
    assert (
        "radixserve_kernels/rms_norm.py" in zipfile.ZipFile(wheels["radixserve-kernels"]).namelist()
    )
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "radixserve = radixserve.client.__main__:main" in (
        zipfile.ZipFile(wheels["radixserve"]).read(entry).decode()
    )


def test_installed_wheels_import_outside_the_checkout(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
        + [str(w) for w in wheels.values()],
        check=True,
        timeout=300,
    )
    code = (
        "import radixserve.scheduler.radix_cache as m, radixserve.v1.worker_pb2 as w, "
        "radixserve_kernels as k; print(m.__file__); print(w.__file__); print(k.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=True,
    ).stdout.split()
    assert len(out) == 3 and all(path.startswith(str(target)) for path in out), out


def test_import_names_are_paths_under_the_source_roots() -> None:
    """In the checkout (repository root first on sys.path, as pytest and `python -m` put it), each
    module has one name: its path under services/ or kernels/, and the root hides nothing."""
    code = (
        "import radixserve.worker.engine as e, radixserve_kernels as k, radixserve.v1 as v;"
        "import kernels, transformers;"
        "from transformers import LlamaConfig, LlamaForCausalLM;"
        "print(e.__file__); print(k.__file__); print(v.__file__); print(kernels.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    engine, kernels_pkg, stubs, hf_kernels = out.stdout.split()
    assert engine == str(ROOT / "services" / "radixserve" / "worker" / "engine.py")
    assert kernels_pkg == str(ROOT / "kernels" / "radixserve_kernels" / "__init__.py")
    assert stubs == str(ROOT / "services" / "radixserve" / "v1" / "__init__.py")
    # `kernels` is Hugging Face's distribution (transformers imports it), not our folder.
    assert "site-packages" in hf_kernels and not hf_kernels.startswith(str(ROOT / "kernels"))


def test_no_folder_at_the_root_is_a_package_but_tests() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == {"tests"}, packages
    assert not (ROOT / "services" / "__init__.py").exists()


# --- the lock -------------------------------------------------------------------------------


def _pins(lock: Path) -> dict[str, str]:
    text = lock.read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", text, flags=re.M))
    assert "-e " not in text and "file://" not in text, f"{lock}: a local path in the lock"
    return {canonicalize_name(k): v for k, v in pins.items()}


def _project_requirements() -> list[tuple[str, Requirement]]:
    reqs = []
    for name, (project, _) in DISTS.items():
        meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
        reqs += [(name, Requirement(r)) for r in meta.get("dependencies", [])]
        for extra, deps in meta.get("optional-dependencies", {}).items():
            reqs += [(f"{name}[{extra}]", Requirement(r)) for r in deps]
    return reqs


def test_the_lock_pins_every_requirement_of_the_projects_at_a_version_they_accept() -> None:
    pins = _pins(ROOT / "requirements" / "lock.txt")
    env = default_environment() | {"python_version": "3.11", "sys_platform": "linux"}
    ours = {canonicalize_name(n) for n in DISTS}
    for where, req in _project_requirements():
        name = canonicalize_name(req.name)
        if name in ours or (req.marker and not req.marker.evaluate(env)):
            continue
        assert name in pins, f"{where}: {req} is not in requirements/lock.txt (run make lock)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{where}: {req} does not accept the locked {name}=={pins[name]} (run make lock)"
        )
    assert pins["torch"].endswith("+cpu"), "the lock's torch is the CPU build"


def test_every_pin_of_the_lock_carries_hashes_and_the_runtime_lock_agrees() -> None:
    for lock in ("lock.txt", "runtime.txt", "k8s-tools.txt"):
        text = (ROOT / "requirements" / lock).read_text()
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])
        for block in blocks:
            if re.match(r"[A-Za-z0-9._-]+==", block):
                assert "--hash=sha256:" in block, f"{lock}: {block.splitlines()[0]} has no hash"
    full, runtime = (
        _pins(ROOT / "requirements" / "lock.txt"),
        _pins(ROOT / "requirements" / "runtime.txt"),
    )
    differ = {n: (v, full.get(n)) for n, v in runtime.items() if full.get(n) != v}
    assert not differ, f"requirements/runtime.txt disagrees with lock.txt: {differ}"
