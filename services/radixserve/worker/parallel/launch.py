"""Server-side wiring of a TP worker: which ranks start here, and how rank 0 serves them.

Imports no torch at module level: ``start_worker`` opens its port before the model loads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from radixserve.worker.metrics_tp import HostRanks, TPMetrics, follower_ports
from radixserve.worker.parallel.topology import Topology, resolve_topology

logger = logging.getLogger(__name__)


def wants_tp(cfg: Any, env: dict[str, str] | None = None) -> bool:
    """True when flags or the environment (torchrun, LeaderWorkerSet) ask for a TP group."""
    env = os.environ if env is None else env
    return (
        cfg.tp > 1
        or cfg.nnodes > 1
        or int(env.get("WORLD_SIZE", "1")) > 1
        or int(env.get("LWS_GROUP_SIZE", "1")) > 1
    )


class TPLaunch:
    """This host's part of the group: spawns its followers; its first rank runs in-process."""

    def __init__(self, cfg: Any, runner_cfg: Any) -> None:
        from radixserve.worker.parallel.worker_group import WorkerGroup

        self.cfg, self.runner_cfg = cfg, runner_cfg
        self.topo: Topology = resolve_topology(
            cfg.tp, cfg.nnodes, cfg.node_rank, cfg.master_addr, cfg.master_port
        )
        self.rank = self.topo.ranks.start
        _check_model(runner_cfg, self.topo.world_size)  # before any process starts
        logger.info(
            "starting TP ranks",
            extra={"kv": {"ranks": f"{self.rank}..{self.topo.ranks.stop - 1}",
                          "world": self.topo.world_size, "rendezvous": self.topo.init_method}},
        )  # fmt: skip
        self.workers = WorkerGroup(self.topo, runner_cfg, cfg.tp_timeout, cfg.metrics_port)
        self.leader: Any = None
        self.metrics = TPMetrics(self.rank)  # this process's rank
        self.follower_done = threading.Event()  # a follower host: its first rank stopped

    @property
    def serves(self) -> bool:
        """Only global rank 0 opens the gRPC port."""
        return self.rank == 0

    def ranks_collector(self) -> HostRanks:
        """Every rank of this host, for the host's metrics endpoint (labelled ``tp_rank``)."""
        ports = follower_ports(self.cfg.metrics_port, self.topo.ranks)
        return HostRanks(self.rank, self.metrics.registry, ports)

    def build_leader(self) -> Any:
        """Rank 0's runner (blocks until every rank joined the group)."""
        from radixserve.worker.parallel.worker_group import LeaderRunner, build_rank

        runner = build_rank(self.runner_cfg, self.topo, 0, self.cfg.tp_timeout)
        self.leader = LeaderRunner(runner, self.workers.fail, self.metrics)
        return self.leader

    async def run_follower_host(self) -> TPHandle:
        """A host whose first rank is a follower: that rank runs on a thread of this process."""
        from radixserve.common.metrics import serve_metrics
        from radixserve.worker.metrics_tp import HostRanksMetrics
        from radixserve.worker.parallel.worker_group import build_rank, follower_loop

        # This host's ranks on the plain metrics port: its pod is scraped like rank 0's.
        host = HostRanksMetrics()
        host.r.register(self.ranks_collector())
        serve_metrics(host.registry, self.cfg.metrics_port)

        def follow() -> None:
            runner = build_rank(self.runner_cfg, self.topo, self.rank, self.cfg.tp_timeout)
            host.model_name = runner.info.model_name
            code = follower_loop(runner, self.metrics)
            self.follower_done.set()
            self.workers.stop(None)
            os._exit(code)  # the group is over either way: the orchestrator restarts it

        asyncio.get_running_loop().run_in_executor(None, follow)
        return TPHandle(None, self)

    def stop(self) -> None:
        self.workers.stop(self.leader)


class TPHandle:
    """What ``start_worker`` returns under TP: stops the gRPC server, then every local rank."""

    def __init__(self, server: Any, launch: TPLaunch) -> None:
        self.server, self.launch = server, launch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)

    async def drain(self, seconds: float | None = None) -> bool:
        """Rank 0 drains its server (see ``RunningWorker.drain``); the ranks follow it. A host
        without rank 0 keeps following until rank 0 stops the group (its ranks then exit) or
        its own drain period passes."""
        if self.server is not None:
            return await self.server.drain(seconds)
        seconds = self.launch.cfg.drain_seconds if seconds is None else seconds
        logger.info("following rank 0 until it stops the group", extra={"kv": {"s": seconds}})
        return await asyncio.to_thread(self.launch.follower_done.wait, seconds)

    async def stop(self, grace: float = 2.0) -> None:
        if self.server is not None:
            await self.server.stop(grace)
        await asyncio.to_thread(self.launch.stop)
        if self.server is None:
            # NOTE: this host's first rank blocks in the group on an executor thread that
            # interpreter shutdown would wait for forever; the group is over, so leave now.
            os._exit(0)


def _check_model(runner_cfg: Any, tp: int) -> None:
    """ValueError naming the head count and the TP size, before any rank starts."""
    from radixserve.common.model_source import resolve_model
    from radixserve.worker.loader import read_config
    from radixserve.worker.parallel.shapes import check_tp

    check_tp(read_config(resolve_model(runner_cfg.model, runner_cfg.load_format)), tp)
