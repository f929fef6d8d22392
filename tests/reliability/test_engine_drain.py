"""Issue 10: SIGTERM to an engine's processes drains them instead of failing what runs.

The scheduler and the worker run as real processes (``python -m radixserve.<name>``)
behind an in-process front door, with streams of 40 tokens in flight on the embedded model.
Kubernetes sends SIGTERM to both containers of an engine pod at once; each is also tried alone.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from radixserve.v1 import scheduler_pb2, scheduler_pb2_grpc
from tests.reliability.conftest import SERVING, readiness, scheduler_load, wait_for
from tests.reliability.engine_procs import (
    Proc,
    front_door,
    in_process_worker,
    plain,
    spawn_scheduler,
    spawn_worker,
    stream,
    wait_ready,
)

TOKENS = 40
STREAMS = 3


def _start_streams(pool, door, sched: Proc, tokens: int = TOKENS) -> tuple[list, list[float]]:
    """``STREAMS`` streams, returned once the scheduler runs all of them."""
    chunks: list[float] = []
    futures = [pool.submit(stream, door, tokens, chunks) for _ in range(STREAMS)]
    running = lambda: scheduler_load(sched.address).running == STREAMS  # noqa: E731
    assert wait_for(running, timeout=60, every=0.02), "the streams never ran together"
    return futures, chunks


def _connect_refused(address: str) -> grpc.StatusCode:
    hello = scheduler_pb2.ConnectRequest(hello=scheduler_pb2.Hello(client_name="late"))
    with grpc.insecure_channel(address) as channel:
        call = scheduler_pb2_grpc.SchedulerServiceStub(channel).Connect(iter([hello]), timeout=5)
        try:
            list(call)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def _kill(*procs: Proc) -> None:
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.kill()
            proc.popen.wait()


def _engine(tmp_path, worker_drain: float) -> tuple[Proc, Proc]:
    """A worker and a scheduler (drain 30 s) as processes, once both are ready."""
    worker = spawn_worker(tmp_path, drain=worker_drain)
    sched = spawn_scheduler(tmp_path, worker.address, drain=30)
    try:
        wait_ready(worker)
        wait_ready(sched)
    except BaseException:
        _kill(worker, sched)
        raise
    return worker, sched


@pytest.mark.timeout(180)
def test_sigterm_to_the_scheduler_finishes_running_streams_then_exits(runner, tmp_path):
    with in_process_worker(runner) as worker_address:
        sched = spawn_scheduler(tmp_path, worker_address, drain=30)
        try:
            wait_ready(sched)
            with front_door(sched.address) as door, ThreadPoolExecutor(4) as pool:
                futures, chunks = _start_streams(pool, door, sched)
                t0 = sched.sigterm()
                assert wait_for(lambda: readiness(sched.address) != SERVING, timeout=3)
                # New work is refused at once: a new request through the front door (whether
                # the link already saw NOT_SERVING or the scheduler refused it) and a new stream.
                assert plain(door, 4) == "status:503"
                assert _connect_refused(sched.address) == grpc.StatusCode.UNAVAILABLE
                outcomes = [f.result(timeout=120) for f in futures]
            assert outcomes == [("finished:length", TOKENS)] * STREAMS, sched.tail()
            assert max(chunks) > t0  # tokens kept coming after the SIGTERM
            assert sched.wait(30) == 0
            assert time.monotonic() - t0 < 30
            assert "drained" in sched.tail(100_000)
        finally:
            _kill(sched)


@pytest.mark.timeout(180)
def test_drain_period_shorter_than_the_work_ends_the_rest_with_an_error(runner, tmp_path):
    with in_process_worker(runner) as worker_address:
        sched = spawn_scheduler(tmp_path, worker_address, drain=1)
        try:
            wait_ready(sched)
            with front_door(sched.address) as door, ThreadPoolExecutor(4) as pool:
                futures, _ = _start_streams(pool, door, sched, tokens=400)
                t0 = sched.sigterm()
                outcomes = [f.result(timeout=60) for f in futures]
                assert sched.wait(15) == 0
                assert time.monotonic() - t0 < 10
            for outcome, got in outcomes:
                assert outcome.startswith("error:"), outcomes
                assert "scheduler shut down (drain period of 1s over)" in outcome, outcomes
                assert got < 400
        finally:
            _kill(sched)


@pytest.mark.slow  # a worker process loads the model (~10 s), then waits out its drain period
@pytest.mark.timeout(240)
def test_sigterm_to_the_worker_alone_serves_its_scheduler_until_its_deadline(tmp_path):
    worker, sched = _engine(tmp_path, worker_drain=12)
    try:
        with front_door(sched.address) as door, ThreadPoolExecutor(4) as pool:
            futures, chunks = _start_streams(pool, door, sched)
            t0 = worker.sigterm()
            assert wait_for(lambda: readiness(worker.address) != SERVING, timeout=3)
            # The scheduler does not know: its open stream is still served, new work included.
            assert plain(door, 4) == "finished:length"
            outcomes = [f.result(timeout=120) for f in futures]
            assert outcomes == [("finished:length", TOKENS)] * STREAMS, worker.tail()
            assert max(chunks) > t0
            assert worker.wait(30) == 0
            waited = time.monotonic() - t0
            assert 11 < waited < 25, waited  # it served the open stream up to its deadline
            # Then the scheduler lost its worker, as with any worker exit.
            assert wait_for(lambda: readiness(sched.address) != SERVING, timeout=10)
        sched.sigterm()
        assert sched.wait(15) == 0
    finally:
        _kill(worker, sched)


@pytest.mark.slow  # a worker process loads the model (~10 s)
@pytest.mark.timeout(240)
def test_sigterm_to_both_at_once_as_kubernetes_does(tmp_path):
    worker, sched = _engine(tmp_path, worker_drain=40)
    try:
        with front_door(sched.address) as door, ThreadPoolExecutor(4) as pool:
            futures, chunks = _start_streams(pool, door, sched)
            t0 = sched.sigterm()
            worker.sigterm()
            assert plain(door, 4) == "status:503"
            outcomes = [f.result(timeout=120) for f in futures]
        assert outcomes == [("finished:length", TOKENS)] * STREAMS, sched.tail() + worker.tail()
        assert max(chunks) > t0
        assert sched.wait(30) == 0
        sched_done = time.monotonic()
        # The scheduler closed its stream: the worker leaves at once, not at its 40 s deadline.
        assert worker.wait(10) == 0
        assert time.monotonic() - sched_done < 5
        assert time.monotonic() - t0 < 30
    finally:
        _kill(worker, sched)


@pytest.mark.slow  # a second engine's worker process loads the model (~10 s)
@pytest.mark.timeout(240)
def test_with_two_engines_new_requests_go_to_the_one_not_draining(runner, tmp_path):
    other_worker = spawn_worker(tmp_path, drain=40)
    other = spawn_scheduler(tmp_path, other_worker.address, drain=30)
    with in_process_worker(runner) as worker_address:
        sched = spawn_scheduler(tmp_path, worker_address, drain=30)
        try:
            for proc in (other_worker, other, sched):
                wait_ready(proc)
            with (
                front_door(f"{sched.address},{other.address}") as door,
                ThreadPoolExecutor(12) as pool,
            ):
                upstream = door.handles[-1].frontend.manager.upstream
                # The front door's readiness probes stop (after the one under way), so that only
                # the drain refusal itself can take the draining engine out of routing.
                for link in upstream.links:
                    link.probe_seconds = 3600
                time.sleep(1.2)
                chunks: list[float] = []
                futures = [pool.submit(stream, door, TOKENS, chunks) for _ in range(4)]

                def all_admitted() -> bool:
                    here, there = (scheduler_load(p.address).running for p in (sched, other))
                    return here >= 1 and here + there == 4

                assert wait_for(all_admitted, timeout=60, every=0.02)
                t0 = sched.sigterm()
                assert wait_for(lambda: readiness(sched.address) != SERVING, timeout=10)
                # At once, eight requests: the router spreads them over both engines (each add
                # counts in flight), the draining one refuses its share unstarted and the front
                # door sends each of those to the other engine instead of answering 503.
                late = [pool.submit(plain, door, 4) for _ in range(8)]
                assert [f.result(timeout=120) for f in late] == ["finished:length"] * 8
                assert upstream.rerouted >= 1
                outcomes = [f.result(timeout=120) for f in futures]
            assert outcomes == [("finished:length", TOKENS)] * 4, sched.tail()
            assert max(chunks) > t0
            assert sched.wait(30) == 0
        finally:
            _kill(sched, other, other_worker)
