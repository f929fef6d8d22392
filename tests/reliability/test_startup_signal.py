"""SIGTERM during start-up ends a service at once (issue 23, item 9): a scheduler waiting for a
worker that is not there (up to ``--worker-wait-seconds``) used to ignore it until that wait ran
out."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.reliability.conftest import wait_for
from tests.reliability.engine_procs import HOST, spawn
from tests.stack import free_port


def test_sigterm_while_waiting_for_the_worker_ends_the_scheduler(tmp_path: Path) -> None:
    nowhere = f"{HOST}:{free_port()}"  # no worker will ever answer there
    proc = spawn("scheduler", tmp_path, "--worker-address", nowhere, "--worker-wait-seconds", "300")
    try:
        # Its port is open (health answers NOT_SERVING) while it waits for the worker.
        assert wait_for(lambda: _live(proc), 60, 0.2), proc.tail()
        time.sleep(1.0)  # well into its wait for the worker
        sent = proc.sigterm()
        assert proc.wait(timeout=20) == 0, proc.tail()
        assert time.monotonic() - sent < 20
    finally:
        if proc.popen.poll() is None:
            proc.popen.kill()


def _live(proc) -> bool:
    """Its gRPC port answers liveness SERVING: start-up has begun (signals are handled)."""
    with grpc.insecure_channel(proc.address) as channel:
        try:
            req = health_pb2.HealthCheckRequest(service="liveness")
            status = health_pb2_grpc.HealthStub(channel).Check(req, timeout=2).status
        except grpc.RpcError:
            return False
    return status == health_pb2.HealthCheckResponse.SERVING
