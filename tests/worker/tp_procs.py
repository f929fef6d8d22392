"""Processes of a served TP worker, seen from a test: its follower children, liveness, readiness."""

from __future__ import annotations

import os
import socket

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.stack import free_port


def children(pid: int) -> list[int]:
    """The TP follower processes of ``pid`` (multiprocessing's spawn children)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmd:
            out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def readiness(address: str) -> str:
    """``SERVING``, ``NOT_SERVING`` or ``DOWN`` (nothing answers)."""
    with grpc.insecure_channel(address) as ch:
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="readiness"), timeout=2
            )
        except grpc.RpcError:
            return "DOWN"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def ready(address: str) -> bool:
    return readiness(address) == "SERVING"


def free_ports(n: int) -> int:
    """A port p with p .. p+n-1 free (a TP worker's followers serve metrics on p + rank)."""
    for _ in range(50):
        base = free_port()
        try:
            socks = [socket.create_server(("127.0.0.1", base + i)) for i in range(n)]
        except OSError:
            continue
        for s in socks:
            s.close()
        return base
    raise RuntimeError(f"no {n} consecutive free ports")


def rank_samples(text: str, name: str) -> dict[str, float]:
    """``{tp_rank: value}`` of the samples called ``name`` in a Prometheus text scrape; every
    one must carry ``model_name`` too."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                assert sample.labels.get("model_name"), f"{name}: no model_name"
                out[sample.labels["tp_rank"]] = sample.value
    return out
