"""The ranks of one TP worker: followers that replay rank 0's steps, and rank 0's side of it.

Rank 0 (the serving process) wraps its ModelRunner in :class:`LeaderRunner`: every step (and
every reset) is first broadcast to the followers, then run on all ranks; rank 0 alone samples.
Followers (:func:`follower_main`) loop on that broadcast. A rank that dies or a collective that
fails makes :class:`WorkerGroup` fail the group: rank 0 answers steps with an error, turns
NOT_SERVING, stops the followers and exits non-zero so that the orchestrator restarts the group.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from radixserve.worker.parallel.errors import GroupError
from radixserve.worker.parallel.group import TPGroup
from radixserve.worker.parallel.topology import Topology

logger = logging.getLogger(__name__)

_EXIT_DELAY_S = 1.5  # lets rank 0 send the failed step's error before the process goes


def rank_device(device: str, topo: Topology, rank: int) -> str:
    """``cuda:<local index>`` for a CUDA worker (one GPU per rank), else the configured device."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return f"cuda:{topo.local_index(rank)}"
    return "cpu" if device == "auto" else device


def build_rank(runner_cfg: Any, topo: Topology, rank: int, timeout_s: float) -> Any:
    """Join the group as ``rank`` and build this rank's ModelRunner (its weight shards)."""
    from radixserve.worker.engine import ModelRunner

    cfg = replace(runner_cfg, device=rank_device(runner_cfg.device, topo, rank))
    group = TPGroup.init(rank, topo.world_size, cfg.device, topo.init_method, timeout_s)
    return ModelRunner(cfg, group)


class LeaderRunner:
    """Rank 0's ModelRunner, seen by the servicer: broadcasts each step, then runs it."""

    def __init__(self, runner: Any, on_failure: Callable[[str], None], metrics: Any) -> None:
        self.runner, self.group = runner, runner.tp
        self.on_failure, self.metrics = on_failure, metrics
        self.failed: str | None = None
        self._lock = threading.Lock()  # NOTE: collectives must reach every rank in one order

    def __getattr__(self, name: str) -> Any:
        # Read-only attributes (info, device, num_live_rows, ...) are the runner's; every call
        # that touches model state is wrapped below, so the followers see it too.
        return getattr(self.runner, name)

    def step(self, batch: Any) -> Any:
        # Followers keep no sampled tokens: send the ones this step's decodes feed in.
        rows = self.runner.rows
        # NOTE: None too (a row that sampled nothing), so every rank rejects the same steps.
        states = {r.row: rows.get(r.row) for r in batch.reqs if r.is_decode}
        tokens = {row: st.last_token for row, st in states.items() if st is not None}
        start = time.perf_counter()
        out = self._run(("step", batch, tokens), self.runner.step, batch)
        self.metrics.observe(time.perf_counter() - start, self.group)
        return out

    def reset(self) -> None:
        self._run(("reset",), self.runner.reset)

    def release(self, rows: list[int]) -> None:
        self._run(("release", rows), self.runner.release, rows)

    def _run(self, msg: tuple, fn: Callable, *args: Any) -> Any:
        with self._lock:
            if self.failed is not None:
                raise GroupError(f"tensor-parallel group failed: {self.failed}")
            try:
                self.group.broadcast_object(msg)
                return fn(*args)
            except ValueError:
                raise  # a rejected step: every rank rejected it before any collective
            except Exception as exc:
                self.failed = f"{type(exc).__name__}: {exc}"
                self.on_failure(self.failed)
                raise GroupError(f"tensor-parallel group failed: {self.failed}") from exc

    def stop(self) -> None:
        """Tells the followers to exit (cleanly) unless the group already failed."""
        with self._lock:
            if self.failed is None:
                self.failed = "stopped"
                self.group.broadcast_object(("stop",))


def follower_loop(runner: Any, metrics: Any) -> int:
    """Replays rank 0's steps until told to stop (0) or the group breaks (1)."""
    group = runner.tp
    while True:
        try:
            msg = group.broadcast_object()
        except Exception as exc:  # rank 0 or a peer is gone
            logger.error(
                "TP follower lost the group", extra={"kv": {"rank": group.rank, "err": exc}}
            )
            return 1
        kind = msg[0]
        if kind == "stop":
            return 0
        try:
            if kind == "reset":
                runner.reset()
            elif kind == "release":
                runner.release(msg[1])
            else:
                _follow_step(runner, msg[1], msg[2], metrics)
        except ValueError:
            pass  # rank 0 rejected the same step before any collective
        except Exception as exc:
            logger.error("TP follower step failed", extra={"kv": {"rank": group.rank, "err": exc}})
            return 1


def _follow_step(runner: Any, batch: Any, tokens: dict[int, int], metrics: Any) -> None:
    for row, token in tokens.items():
        state = runner.rows.get(row)
        if state is not None:
            state.last_token = token
    start = time.perf_counter()
    runner.step(batch)
    metrics.observe(time.perf_counter() - start, runner.tp)


def _watch_parent(parent_pid: int) -> None:
    """A follower outlives no parent: SIGKILL of rank 0 must not leave ranks behind."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def follower_main(
    rank: int, topo: Topology, runner_cfg: Any, timeout_s: float, metrics_port: int, parent: int
) -> None:
    """Entry of a follower child process (spawn)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from radixserve.common.logs import setup_logging
    from radixserve.common.metrics import serve_metrics
    from radixserve.worker.metrics_tp import TPMetrics

    setup_logging(f"worker-rank{rank}")
    # NOTE: Ctrl-C and SIGTERM reach rank 0, which drains and then stops us (a follower that
    # left early would break the group under the steps rank 0 still serves); rank 0's death
    # is seen by _watch_parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if parent:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    try:
        runner = build_rank(runner_cfg, topo, rank, timeout_s)
    except Exception:
        logger.exception("TP follower failed to start", extra={"kv": {"rank": rank}})
        os._exit(1)
    metrics = TPMetrics(rank)
    if metrics_port > 0:
        # NOTE: loopback only: the host's serving process re-exports it (see metrics_tp.py).
        serve_metrics(metrics.registry, metrics_port + rank, host="127.0.0.1")
    code = follower_loop(runner, metrics)
    logger.info("TP follower exits", extra={"kv": {"rank": rank, "code": code}})
    os._exit(code)  # NOTE: no teardown: destroying a broken group can hang


class WorkerGroup:
    """Starts this host's follower processes and watches them; fails the group on any exit."""

    def __init__(
        self, topo: Topology, runner_cfg: Any, timeout_s: float, metrics_port: int
    ) -> None:
        self.topo, self.timeout_s = topo, timeout_s
        self.procs: dict[int, mp.process.BaseProcess] = {}
        self.failed: str | None = None
        self.stopping = False
        self.exit_on_failure = True
        self.on_failure: list[Callable[[str], None]] = []
        ctx = mp.get_context("spawn")
        for rank in list(topo.ranks)[1:]:
            args = (rank, topo, runner_cfg, timeout_s, metrics_port, os.getpid())
            proc = ctx.Process(target=follower_main, args=args, name=f"tp-rank{rank}", daemon=False)
            proc.start()
            self.procs[rank] = proc
        if self.procs:
            threading.Thread(target=self._monitor, name="tp-monitor", daemon=True).start()

    def _monitor(self) -> None:
        sentinels = {p.sentinel: r for r, p in self.procs.items()}
        ready = mp.connection.wait(list(sentinels))
        if self.stopping:
            return
        rank = sentinels[ready[0]]
        self.fail(f"TP rank {rank} exited with code {self.procs[rank].exitcode}")

    def fail(self, reason: str) -> None:
        """Once: tell the server, stop every follower, and (by default) exit non-zero soon."""
        if self.failed is not None or self.stopping:
            return
        self.failed = reason
        logger.error("TP group failed; exiting", extra={"kv": {"reason": reason}})
        for callback in self.on_failure:
            callback(reason)
        self._terminate()
        if self.exit_on_failure:
            threading.Timer(_EXIT_DELAY_S, os._exit, (1,)).start()

    def stop(self, leader: LeaderRunner | None, grace_s: float = 5.0) -> None:
        self.stopping = True
        if leader is not None and self.failed is None:
            try:
                leader.stop()
            except Exception as exc:
                logger.warning("TP stop broadcast failed", extra={"kv": {"err": exc}})
        deadline = time.monotonic() + grace_s
        for proc in self.procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
        self._terminate()

    def _terminate(self) -> None:
        # NOTE: SIGKILL, not SIGTERM: followers ignore SIGTERM (they follow rank 0) and keep no
        # state worth a teardown.
        for proc in self.procs.values():
            if proc.is_alive():
                proc.kill()
        for proc in self.procs.values():
            proc.join(2.0)
