"""Issue 15: every TP rank's metrics are scraped through the worker's one metrics port.

A served ``--tp 2`` worker (gloo on CPU, tiny dummy weights) behind an in-process scheduler: one
request later, both ranks' forward-time series have moved, labelled ``tp_rank``, on the port
Prometheus scrapes; the follower's own endpoint answers on loopback only.
"""

from __future__ import annotations

import asyncio
import urllib.request

import pytest

from radixserve.scheduler.config import scheduler_config
from radixserve.scheduler.server import start_scheduler
from radixserve.tokenizer.clients import outputs_from_pb
from radixserve.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from tests.stack import free_port
from tests.worker.test_tp_launch import start_tiny_tp2_worker
from tests.worker.tp_procs import free_ports, rank_samples

FORWARD_COUNT = "radixserve_worker_tp_forward_seconds_count"


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


async def _one_request(worker_address: str, tokens: int) -> int:
    """Runs one request through an in-process scheduler; returns the tokens it generated."""
    import grpc

    cfg = scheduler_config(
        host="127.0.0.1", port=0, metrics_port=0, worker_address=worker_address,
        worker_wait_seconds=30,
    )  # fmt: skip
    sched = await start_scheduler(cfg)
    sampling = common_pb2.SamplingParams(temperature=0, max_new_tokens=tokens, ignore_eos=True)
    req = scheduler_pb2.SchedRequest(rid="r", input_ids=[1, 2, 3], sampling=sampling)
    got = 0
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{sched.port}") as channel:
            call = scheduler_pb2_grpc.SchedulerServiceStub(channel).Connect()
            await call.write(
                scheduler_pb2.ConnectRequest(add=scheduler_pb2.AddRequests(requests=[req]))
            )
            async with asyncio.timeout(60):
                while True:
                    resp = await call.read()
                    out = [o for o in outputs_from_pb(resp) if o.rid == "r"]
                    got += sum(len(o.token_ids) for o in out)
                    if any(o.finish_reason for o in out):
                        break
            call.cancel()
    finally:
        await sched.stop()
    return got


@pytest.mark.timeout(180)
def test_both_ranks_forward_time_is_scraped_with_tp_rank(tmp_path):
    port, metrics = free_port(), free_ports(2)
    worker = start_tiny_tp2_worker(
        tmp_path, port, metrics, env={"RADIXSERVE_METRICS_HOST": "0.0.0.0"}
    )
    try:
        before = _scrape(metrics)
        assert rank_samples(before, "radixserve_worker_tp_rank_up") == {"0": 1.0, "1": 1.0}
        counts = rank_samples(before, FORWARD_COUNT)
        assert asyncio.run(_one_request(f"127.0.0.1:{port}", 5)) == 5
        after = _scrape(metrics)
        moved = rank_samples(after, FORWARD_COUNT)
        # Five tokens: one prefill step and four decode steps at least, the same on each rank.
        assert moved["0"] - counts["0"] >= 5 and moved["0"] == moved["1"], (counts, moved)
        sums = rank_samples(after, "radixserve_worker_tp_forward_seconds_sum")
        assert all(sums[r] > 0 for r in ("0", "1")), sums
        sent = rank_samples(after, "radixserve_worker_tp_allreduce_bytes_total")
        assert sent["0"] == sent["1"] > 0, sent  # both ranks take part in every all-reduce
        # The follower's own endpoint (metrics port + rank) is internal: loopback only, even
        # with RADIXSERVE_METRICS_HOST=0.0.0.0 (the serving port binds that).
        assert _listens_on_loopback_only(metrics + 1)
    finally:
        worker.kill()
        worker.wait(10)


def _listens_on_loopback_only(port: int) -> bool:
    """From /proc/net/tcp: ``port`` listens, and only on 127.0.0.1."""
    addresses = []
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            ip, hexport = local.split(":")
            if int(hexport, 16) == port and state == "0A":  # LISTEN
                addresses.append(ip)
    return addresses == ["0100007F"]
