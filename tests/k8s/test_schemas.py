"""Rendered objects validate for every Kubernetes minor version we claim (kubernetes-validate,
strict: an unknown field fails), and custom resources against their CRDs' schemas kept in
tests/k8s/crds/ (each file names its source repository, version and commit)."""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.k8s.manifests import OVERLAYS, Doc, render

K8S_VERSIONS = ("1.29.0", "1.32.0")
TARGETS = [*OVERLAYS, "gpu+opt-in", "multinode+opt-in"]
CRDS = Path(__file__).parent / "crds"
pytestmark = pytest.mark.timeout(180)


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path in sorted(CRDS.glob("*.json")):
        schema = json.loads(path.read_text())
        src = schema["x-source"]
        out[(src["apiVersion"], src["kind"])] = strict(schema)
    return out


def strict(schema: Any) -> Any:
    """The API server prunes unknown fields of a CRD object; we reject them instead (a typo in a
    field name would otherwise pass silently)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    open_ended = out.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in out
    if "properties" in out and not open_ended:
        out["additionalProperties"] = False
    return out


def _pod_templates_of_lws(doc: Doc) -> list[Doc]:
    lwt = doc["spec"]["leaderWorkerTemplate"]
    return [
        {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"lws-{k}"}, "template": t}
        for k, t in (("leader", lwt["leaderTemplate"]), ("worker", lwt["workerTemplate"]))
    ]


def _core(docs: tuple[Doc, ...]) -> list[Doc]:
    out = []
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in crd_schemas():
            if doc["kind"] == "LeaderWorkerSet":
                out += _pod_templates_of_lws(doc)
        else:
            out.append(doc)
    return out


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_core_objects_validate_strictly(target: str, version: str) -> None:
    for doc in _core(render(target)):
        name = f"{target} {doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(copy.deepcopy(doc), version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} on Kubernetes {version}: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize("target", TARGETS)
def test_custom_resources_validate_against_their_crds(target: str) -> None:
    seen = set()
    for doc in render(target):
        key = (doc["apiVersion"], doc["kind"])
        if key in crd_schemas():
            seen.add(doc["kind"])
            errors = list(jsonschema.Draft7Validator(crd_schemas()[key]).iter_errors(doc))
            msgs = [f"{list(e.path)}: {e.message}" for e in errors]
            assert not errors, f"{target} {doc['kind']}/{doc['metadata']['name']}: {msgs}"
    if "opt-in" in target:
        assert {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject"} <= seen
    if target.startswith("multinode"):
        assert "LeaderWorkerSet" in seen


def test_crd_schemas_name_their_source() -> None:
    for path in CRDS.glob("*.json"):
        src = json.loads(path.read_text())["x-source"]
        assert re.fullmatch(r"v\d+\.\d+\.\d+", src["version"]), path
        assert re.fullmatch(r"[0-9a-f]{40}", src["commit"]) and src["repository"], path
    assert len(crd_schemas()) == 5


def test_crd_checks_catch_a_misspelt_field() -> None:
    (lws,) = [d for d in render("multinode") if d["kind"] == "LeaderWorkerSet"]
    bad = copy.deepcopy(lws)
    bad["spec"]["leaderWorkerTemplate"]["restartPolicy"] = "RecreateGroupOnRestart"
    bad["spec"]["leaderWorkerTemplate"]["sise"] = 2
    schema = crd_schemas()[("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")]
    messages = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(bad)]
    assert any("sise" in m for m in messages) and any(
        "RecreateGroupOnRestart" in m for m in messages
    )
