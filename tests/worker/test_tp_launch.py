"""Where the ranks come from (flags, torchrun, LeaderWorkerSet) and a served group's clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import grpc
import pytest

from radixserve.v1 import worker_pb2, worker_pb2_grpc
from radixserve.worker.config import WorkerConfig
from radixserve.worker.parallel.launch import wants_tp
from radixserve.worker.parallel.topology import resolve_topology
from tests.stack import free_port
from tests.worker.tp_procs import alive, children, ready

TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "vocab_size": 64, "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 64,
}  # fmt: skip
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_single_host_flags():
    topo = resolve_topology(4, env={})
    assert list(topo.ranks) == [0, 1, 2, 3] and topo.master_addr == "127.0.0.1"
    assert topo.master_port > 0 and topo.init_method.startswith("tcp://127.0.0.1:")


def test_leaderworkerset_env_spans_nodes():
    env = {"LWS_LEADER_ADDRESS": "leader.svc", "LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "1"}
    topo = resolve_topology(8, env=env)
    assert list(topo.ranks) == [4, 5, 6, 7] and topo.master_addr == "leader.svc"
    assert topo.master_port == 29500 and topo.local_index(5) == 1
    assert wants_tp(WorkerConfig(), env)


def test_torchrun_env_is_one_rank_per_process():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.1",
           "MASTER_PORT": "1234"}  # fmt: skip
    topo = resolve_topology(1, env=env)
    assert list(topo.ranks) == [3] and topo.local_index(3) == 1
    assert topo.init_method == "tcp://10.0.0.1:1234"


def test_flags_are_checked_naming_the_field():
    with pytest.raises(ValueError, match=r"tp \(3\) must be a positive multiple of nnodes \(2\)"):
        resolve_topology(3, nnodes=2, env={})
    with pytest.raises(ValueError, match=r"node_rank \(2\)"):
        resolve_topology(4, nnodes=2, node_rank=2, env={})
    assert not wants_tp(WorkerConfig(), {})


def start_tiny_tp2_worker(
    tmp_path, port: int, metrics_port: int = 0, env: dict | None = None
) -> subprocess.Popen:
    """Starts a served --tp 2 worker on tiny dummy weights; returns it once ready (the caller
    kills it)."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    worker = subprocess.Popen(
        [sys.executable, "-m", "radixserve.worker", "--tp", "2", "--port", str(port),
         "--host", "127.0.0.1", "--metrics-port", str(metrics_port), "--model", str(config),
         "--load-format", "dummy", "--num-slots", "64", "--max-rows", "2"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1", **(env or {})},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 150
        while not ready(f"127.0.0.1:{port}"):
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
    except BaseException:
        worker.kill()
        raise
    return worker


@pytest.fixture
def tiny_tp2_worker(tmp_path):
    """A served --tp 2 worker (tiny dummy weights) and its one follower, once ready."""
    worker = start_tiny_tp2_worker(tmp_path, free_port())
    try:
        followers = children(worker.pid)
        assert len(followers) == 1
        yield worker, followers[0]
    finally:
        if worker.poll() is None:
            worker.kill()


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


@pytest.mark.timeout(180)
def test_sigterm_stops_every_rank(tiny_tp2_worker):
    worker, follower = tiny_tp2_worker
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert _gone(follower, 5)


@pytest.mark.timeout(180)
def test_killed_rank0_takes_its_followers_down(tiny_tp2_worker):
    """SIGKILL leaves rank 0 no time to stop anyone: the follower notices and exits."""
    worker, follower = tiny_tp2_worker
    worker.kill()
    worker.wait(10)
    assert _gone(follower, 5)


@pytest.mark.timeout(180)
def test_two_nodes_one_rank_each(tmp_path):
    """``--nnodes 2``: node 1's rank runs in its own process (no gRPC port); node 0 serves
    ``tp_size`` 2, and its SIGTERM stops node 1 cleanly too."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    port, rendezvous = free_port(), free_port()
    common = ["--tp", "2", "--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port",
              str(rendezvous), "--metrics-port", "0", "--model", str(config), "--load-format",
              "dummy", "--num-slots", "64", "--max-rows", "2", "--host", "127.0.0.1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "radixserve.worker", *common]
    node1 = subprocess.Popen([*cmd, "--node-rank", "1", "--port", "1"], cwd=ROOT, env=env)
    node0 = subprocess.Popen([*cmd, "--node-rank", "0", "--port", str(port)], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 150
        while not ready(f"127.0.0.1:{port}"):
            assert node0.poll() is None and node1.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            info = (
                worker_pb2_grpc.WorkerServiceStub(ch)
                .GetWorkerInfo(worker_pb2.GetWorkerInfoRequest(), timeout=10)
                .info
            )
        assert info.tp_size == 2 and not children(node0.pid) and not children(node1.pid)
        node0.send_signal(signal.SIGTERM)
        assert node0.wait(20) == 0 and node1.wait(20) == 0
    finally:
        for proc in (node0, node1):
            if proc.poll() is None:
                proc.kill()
