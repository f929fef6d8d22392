"""Every overlay renders, and what it renders agrees with the code: flag and variable names,
ports, probes, peer addresses, named ports of Services and NetworkPolicies, security settings."""

from __future__ import annotations

import dataclasses

import pytest

from tests.k8s import wiring
from tests.k8s.manifests import OVERLAYS, by_kind, config_maps, containers, pod_templates, render

TARGETS = [*OVERLAYS, "gpu+opt-in", "multinode+opt-in"]
pytestmark = pytest.mark.timeout(120)


def service_containers(target: str):
    for where, spec, c in containers(render(target)):
        module = wiring.module_of(c)
        assert module is not None, f"{target} {where}: command {c.get('command')} is no service"
        yield where, spec, c, module


@pytest.mark.parametrize("target", TARGETS)
def test_flags_and_env_names_exist_in_the_code(target: str) -> None:
    """A flag must exist today in cpu-demo (argparse rejects unknown flags); a variable must be
    one the service reads, or a pending one (harmless until its branch lands)."""
    for where, _, c, module in service_containers(target):
        known = wiring.fields(module, pending=target != "cpu-demo")
        for name in wiring.flags(c):
            assert name in known, f"{target} {where}: {module} has no flag --{name}"
        names = {e["name"] for e in c.get("env", [])}
        for src in c.get("envFrom", []):
            if "configMapRef" in src:
                names |= set(config_maps(render(target))[src["configMapRef"]["name"]])
        readable = wiring.env_names(module, pending=True)
        stray = {n for n in names if n.startswith("RADIXSERVE_")} - readable
        assert not stray, f"{target} {where}: {module} does not read {sorted(stray)}"


def test_every_setting_the_services_read_is_in_the_manifest() -> None:
    """Each config field is a flag of the container or a key of its ConfigMaps (base render)."""
    docs = render("cpu-demo")
    maps = config_maps(docs)
    for where, _, c, module in service_containers("cpu-demo"):
        given = {f"RADIXSERVE_{n.upper()}" for n in wiring.flags(c)}
        for src in c.get("envFrom", []):
            if "configMapRef" in src:
                given |= set(maps[src["configMapRef"]["name"]])
        # Pending flags are set per overlay (tp, nnodes, node_rank) or keep their default.
        pending = {f"RADIXSERVE_{n.upper()}" for n in wiring.PENDING.get(module, ())}
        missing = wiring.env_names(module) - wiring.UNSET_ON_PURPOSE - pending - given
        assert not missing, f"{where}: add {sorted(missing)} to k8s/base/config/*.env or args"


@pytest.mark.parametrize("target", TARGETS)
def test_ports_and_probes_match_the_flags(target: str) -> None:
    for where, _, c, _module in service_containers(target):
        f = wiring.flags(c)
        if where.startswith("LeaderWorkerSet/") and "/worker/" in where:
            # Ranks past the leader's serve no gRPC (only global rank 0 does): no probes.
            assert not any(k in c for k in ("startupProbe", "readinessProbe", "livenessProbe"))
            continue
        ports = {p["containerPort"]: p["name"] for p in c.get("ports", [])}
        for flag in ("port", "http_port", "metrics_port"):
            if flag in f and int(f[flag]) > 0:
                assert int(f[flag]) in ports, f"{target} {where}: --{flag} not a container port"
        for kind, service in (
            ("startupProbe", None),
            ("readinessProbe", "readiness"),
            ("livenessProbe", "liveness"),
        ):
            probe = c.get(kind)
            assert probe and "grpc" in probe, f"{target} {where}: no gRPC {kind}"
            assert probe["grpc"]["port"] == int(f["port"]), f"{target} {where}: {kind} port"
            assert probe["grpc"]["service"] in {service or "liveness", service or "readiness"}
        startup = c["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert budget >= 900, f"{target} {where}: startup budget {budget}s < model load"


def _pods_selected(docs, selector: dict[str, str]):
    for _, tpl in pod_templates(docs):
        labels = tpl["metadata"].get("labels", {})
        if all(labels.get(k) == v for k, v in selector.items()):
            yield tpl["spec"]


def _port_names(spec) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}


@pytest.mark.parametrize("target", TARGETS)
def test_services_and_network_policies_name_real_ports(target: str) -> None:
    docs = render(target)
    for svc in by_kind(docs, "Service"):
        pods = list(_pods_selected(docs, svc["spec"]["selector"]))
        assert pods, f"{target} Service/{svc['metadata']['name']} selects no pod"
        for port in svc["spec"]["ports"]:
            for spec in pods:
                assert port["targetPort"] in _port_names(spec), (
                    f"{target} Service/{svc['metadata']['name']}: no port {port['targetPort']}"
                )
    for pol in by_kind(docs, "NetworkPolicy"):
        selector = pol["spec"]["podSelector"].get("matchLabels", {})
        names = set().union(*(_port_names(s) for s in _pods_selected(docs, selector)))
        for rule in pol["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                assert port["port"] in names, f"{target} {pol['metadata']['name']}: {port}"


@pytest.mark.parametrize("target", TARGETS)
def test_front_door_reaches_every_engine_by_its_name(target: str) -> None:
    docs = render(target)
    hosts = {s["metadata"]["name"] for s in by_kind(docs, "Service")}
    for sts in by_kind(docs, "StatefulSet"):
        name, svc = sts["metadata"]["name"], sts["spec"]["serviceName"]
        hosts |= {f"{name}-{i}.{svc}" for i in range(sts["spec"]["replicas"])}
    for lws in by_kind(docs, "LeaderWorkerSet"):
        name = lws["metadata"]["name"]  # LWS names each leader <name>-<group> in service <name>
        hosts |= {f"{name}-{i}.{name}" for i in range(lws["spec"]["replicas"])}
    scheduler_ports = {
        wiring.flags(c)["port"]
        for _, _, c, m in service_containers(target)
        if m == "radixserve.scheduler"
    }
    for where, _, c, module in service_containers(target):
        if module != "radixserve.tokenizer":
            continue
        for address in wiring.flags(c)["scheduler_address"].split(","):
            host, _, port = address.rpartition(":")
            assert host in hosts, f"{target} {where}: no engine named {host}"
            assert port in scheduler_ports, f"{target} {where}: no scheduler on port {port}"


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_is_locked_down_and_bounded(target: str) -> None:
    for where, spec, c in containers(render(target)):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] and pod["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        sec = c["securityContext"]
        assert sec["allowPrivilegeEscalation"] is False, where
        assert sec["readOnlyRootFilesystem"] is True, where
        assert sec["capabilities"]["drop"] == ["ALL"], where
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][part]), f"{where}: {part}"
        assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), f"{where}: no /tmp"
        assert c["lifecycle"]["preStop"], where
        assert spec["terminationGracePeriodSeconds"] >= 30, where


@pytest.mark.parametrize("target", OVERLAYS)
def test_gpu_requests_follow_the_overlay(target: str) -> None:
    want = {"cpu-demo": 0, "gpu": 1, "tp": 4, "multinode": 8}[target]
    for where, spec, c, module in service_containers(target):
        gpus = int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
        assert gpus == (want if module == "radixserve.worker" else 0), where
        if module == "radixserve.worker" and want:
            shm = [v for v in spec["volumes"] if v["name"] == "dshm"]
            assert shm and shm[0]["emptyDir"]["medium"] == "Memory", where
            assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"]), where


def test_tensor_parallel_settings() -> None:
    def worker_env(target: str) -> dict[str, str]:
        return next(m for n, m in config_maps(render(target)).items() if "worker" in n)

    assert worker_env("tp")["RADIXSERVE_TP"] == "4"
    assert worker_env("multinode")["RADIXSERVE_TP"] == "16"
    (lws,) = by_kind(render("multinode"), "LeaderWorkerSet")
    lwt = lws["spec"]["leaderWorkerTemplate"]
    assert lwt["restartPolicy"] == "RecreateGroupOnPodRestart"
    assert lwt["size"] * 8 == 16
    for where, _, c, module in service_containers("multinode"):
        if module == "radixserve.worker":
            f = wiring.flags(c)
            assert f["nnodes"] == "$(LWS_GROUP_SIZE)", where
            assert f["node_rank"] == "$(LWS_WORKER_INDEX)", where


def _drain_seconds(docs, c, module: str) -> float:
    """The container's RADIXSERVE_DRAIN_SECONDS (its ConfigMaps), else the service's default."""
    env = {}
    for src in c.get("envFrom", []):
        env.update(config_maps(docs).get(src.get("configMapRef", {}).get("name"), {}))
    default = next(
        f.default for f in dataclasses.fields(wiring.CONFIGS[module]) if f.name == "drain_seconds"
    )
    return float(env.get("RADIXSERVE_DRAIN_SECONDS", default))


@pytest.mark.parametrize("target", TARGETS)
def test_grace_period_covers_the_prestop_and_the_drain(target: str) -> None:
    """The kubelet kills at terminationGracePeriodSeconds, counted from the start of preStop: the
    preStop sleep plus the service's drain (tokenizer, scheduler and worker all drain on SIGTERM)
    must fit, or in-flight streams are cut."""
    docs = render(target)
    for where, spec, c, module in service_containers(target):
        command = c["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep", where
        budget = int(command[1]) + _drain_seconds(docs, c, module)
        assert budget < spec["terminationGracePeriodSeconds"], f"{target} {where}: {budget}s"


@pytest.mark.parametrize("target", TARGETS)
def test_the_worker_outlasts_its_schedulers_drain(target: str) -> None:
    """Both containers of an engine pod get SIGTERM at once: the worker must keep serving the
    step stream for longer than the scheduler drains, or the drain loses its worker."""
    docs = render(target)
    pods: dict[str, dict[str, float]] = {}
    for where, _, c, module in service_containers(target):
        pod = where.rsplit("/", 1)[0]
        pods.setdefault(pod, {})[module] = _drain_seconds(docs, c, module)
    engines = [p for p in pods.values() if wiring.SCHEDULER in p]
    assert engines, f"{target}: no engine pod"
    for drains in engines:
        assert drains[wiring.WORKER] > drains[wiring.SCHEDULER], (target, drains)
