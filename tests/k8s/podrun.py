"""``python -m tests.k8s.podrun [overlay]``: run an overlay's rendered pods as local processes.

Each container's ``command``/``args``/``env`` run exactly as written in the render (the image's
``python`` is this interpreter, the image's code is this checkout, Service host names are
127.0.0.1). Then every probe the manifest declares must answer SERVING, every Service port must
reach what it names (gRPC health, the HTTP API, metrics), and one chat request must be answered.
Prints one JSON line (``{"ok": ..., "checks": [...], "error": ...}``); exits 1 on failure. The
test runs it in a fresh network namespace, so the manifest's fixed ports cannot collide.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.k8s.manifests import ROOT, Doc, by_kind, container_env, expand, pod_templates, render

logger = logging.getLogger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def _die_with_parent() -> None:
    """In the child: SIGKILL when this runner dies, even by SIGKILL (a test timeout), so that
    no service outlives the run."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Proc:
    """One container of one pod, run as a local process."""

    name: str
    container: Doc
    grace: int
    popen: subprocess.Popen
    log: Path
    probes: list[tuple[str, int, str]] = field(default_factory=list)

    def tail(self, n: int = 2500) -> str:
        return self.log.read_text(errors="replace")[-n:]


def cluster_names(docs: tuple[Doc, ...]) -> list[str]:
    """Every DNS name a pod may use for a Service or a StatefulSet pod, longest first."""
    names = []
    for svc in by_kind(docs, "Service"):
        names.append(svc["metadata"]["name"])
    for sts in by_kind(docs, "StatefulSet"):
        for i in range(sts["spec"]["replicas"]):
            names.append(f"{sts['metadata']['name']}-{i}.{sts['spec']['serviceName']}")
    ns = "radixserve"
    full = [f"{n}.{ns}.svc.cluster.local" for n in names] + [f"{n}.{ns}.svc" for n in names]
    return sorted(full + [f"{n}.{ns}" for n in names] + names, key=len, reverse=True)


def to_loopback(text: str, names: list[str]) -> str:
    """``name:port`` of a cluster name -> ``127.0.0.1:port``."""
    for name in names:
        text = re.sub(rf"(?<![\w.-]){re.escape(name)}(?=:\d)", "127.0.0.1", text)
    return text


def mount_secrets(
    docs: tuple[Doc, ...], spec: Doc, container: Doc, argv: list[str], logs: Path
) -> list[str]:
    """Secret volumes as the kubelet mounts them: each rendered Secret's ``stringData`` as files
    in a directory of ours, and the args' paths under the mount rewritten to it."""
    secrets = {d["metadata"]["name"]: d.get("stringData", {}) for d in by_kind(docs, "Secret")}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        secret = volumes.get(mount["name"], {}).get("secret")
        if secret is None:
            continue
        where = logs / "secrets" / secret["secretName"]
        where.mkdir(parents=True, exist_ok=True)
        for key, value in secrets.get(secret["secretName"], {}).items():
            (where / key).write_text(value)
        argv = [a.replace(mount["mountPath"], str(where)) for a in argv]
    return argv


def start(docs: tuple[Doc, ...], logs: Path) -> list[Proc]:
    names = cluster_names(docs)
    procs = []
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("RADIXSERVE_")}
    # As the images set it: the source roots of radixserve and radixserve_kernels.
    base_env["PYTHONPATH"] = f"{ROOT / 'services'}{os.pathsep}{ROOT / 'kernels'}"
    for pod, tpl in pod_templates(docs):
        spec = tpl["spec"]
        pod_name = pod.split("/")[1] + "-0"
        fields = {
            "metadata.name": pod_name,
            "metadata.namespace": "radixserve",
            "status.podIP": "127.0.0.1",
        }
        for c in spec["containers"]:
            env = {k: to_loopback(v, names) for k, v in container_env(docs, c, fields).items()}
            argv = [expand(a, env) for a in [*c["command"], *c.get("args", [])]]
            argv = [to_loopback(a, names) for a in argv]
            argv = mount_secrets(docs, spec, c, argv, logs)
            if argv[0] != "python":
                raise ValueError(
                    f"{pod}/{c['name']}: command {argv[0]!r} is not the image's python"
                )
            argv[0] = sys.executable
            log = logs / f"{pod_name}-{c['name']}.log"
            popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**base_env, **env},
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            proc = Proc(f"{pod}/{c['name']}", c, spec["terminationGracePeriodSeconds"], popen, log)
            for kind in PROBES:
                if kind in c:
                    grpc_probe = c[kind]["grpc"]  # the manifests declare gRPC probes only
                    proc.probes.append((kind, grpc_probe["port"], grpc_probe.get("service", "")))
            procs.append(proc)
    return procs


def health(port: int, service: str) -> int | None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2.0
            )
        except grpc.RpcError:
            return None
    return resp.status


def wait_probes(procs: list[Proc], deadline: float, checks: list[str]) -> None:
    pending = [(p, *probe) for p in procs for probe in p.probes]
    while pending:
        for p in procs:
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited {p.popen.returncode}:\n{p.tail()}")
        still = []
        for p, kind, port, service in pending:
            if health(port, service) == SERVING:
                checks.append(f"{p.name} {kind} grpc :{port} service={service!r} SERVING")
            else:
                still.append((p, kind, port, service))
        pending = still
        if pending and time.monotonic() > deadline:
            p, kind, port, service = pending[0]
            raise TimeoutError(f"{p.name} {kind} :{port} {service!r} never SERVING:\n{p.tail()}")
        time.sleep(0.5)


def target_port(docs: tuple[Doc, ...], svc: Doc, port: Doc) -> int:
    """The container port a Service port reaches in the pods it selects."""
    target = port.get("targetPort", port["port"])
    if isinstance(target, int):
        return target
    selector = svc["spec"]["selector"]
    for _, tpl in pod_templates(docs):
        labels = tpl["metadata"].get("labels", {})
        if all(labels.get(k) == v for k, v in selector.items()):
            for c in tpl["spec"]["containers"]:
                for p in c.get("ports", []):
                    if p["name"] == target:
                        return p["containerPort"]
    raise LookupError(f"Service {svc['metadata']['name']}: no pod port named {target}")


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback)
        assert resp.status == 200, f"{url}: HTTP {resp.status}"
        return resp.read().decode()


def check_services(docs: tuple[Doc, ...], checks: list[str]) -> int:
    """Every Service port answers; returns the front door's HTTP port."""
    http_port = 0
    for svc in by_kind(docs, "Service"):
        for port in svc["spec"]["ports"]:
            where = f"Service/{svc['metadata']['name']}:{port['name']}"
            local = target_port(docs, svc, port)
            if port.get("appProtocol") == "grpc":
                status = health(local, "")
                assert status == SERVING, f"{where} -> :{local}: gRPC health {status}"
                checks.append(f"{where} -> :{local} gRPC health SERVING")
            elif "metrics" in port["name"]:
                text = http_get(f"http://127.0.0.1:{local}/metrics")
                assert "radixserve_" in text, f"{where} -> :{local}: no radixserve_ metrics"
                checks.append(f"{where} -> :{local} /metrics")
            else:
                models = json.loads(http_get(f"http://127.0.0.1:{local}/v1/models"))
                assert models["data"], f"{where} -> :{local}: no model listed"
                checks.append(f"{where} -> :{local} /v1/models {models['data'][0]['id']}")
                http_port = local
    assert http_port, "no Service reaches the HTTP API"
    return http_port


def chat(http_port: int, checks: list[str]) -> None:
    import openai

    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{http_port}/v1", api_key="unused", max_retries=0, timeout=60
    )
    model = client.models.list().data[0].id
    resp = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=8,
        temperature=0,
    )
    text = resp.choices[0].message.content or ""
    assert text.strip() and resp.usage.completion_tokens > 0, f"empty answer: {resp}"
    checks.append(f"chat answered {text!r}")


def stop(procs: list[Proc], checks: list[str]) -> None:
    """SIGTERM (as the kubelet sends after preStop); each must exit within its grace period."""
    t0 = time.monotonic()
    for p in procs:
        if p.popen.poll() is None:
            p.popen.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            code = p.popen.wait(timeout=max(0.1, t0 + p.grace - time.monotonic()))
            checks.append(f"{p.name} stopped on SIGTERM (exit {code})")
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait()
            raise TimeoutError(f"{p.name} ignored SIGTERM:\n{p.tail()}") from None


def run(overlay: str, budget: float) -> list[str]:
    docs = render(overlay)
    checks: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        procs = start(docs, Path(tmp))
        try:
            wait_probes(procs, time.monotonic() + budget, checks)
            chat(check_services(docs, checks), checks)
            stop(procs, checks)
        finally:
            for p in procs:
                if p.popen.poll() is None:
                    os.killpg(p.popen.pid, signal.SIGKILL)
                    p.popen.wait()
    return checks


def main() -> int:
    overlay = sys.argv[1] if len(sys.argv) > 1 else "cpu-demo"
    budget = float(os.environ.get("PODRUN_BUDGET", "120"))
    try:
        checks = run(overlay, budget)
    except Exception as exc:  # reported to the test as JSON
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"ok": True, "checks": checks}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
