"""Server-side wiring of a TP worker: which ranks start here, and how rank 0 serves them.

Imports no torch at module level: ``start_worker`` opens its port before the model loads.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from radixserve.services.worker.parallel.topology import Topology, resolve_topology

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
        from radixserve.services.worker.parallel.worker_group import WorkerGroup

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

    @property
    def serves(self) -> bool:
        """Only global rank 0 opens the gRPC port."""
        return self.rank == 0

    def build_leader(self, registry: Any) -> Any:
        """Rank 0's runner (blocks until every rank joined the group)."""
        from radixserve.services.worker.metrics import TPMetrics
        from radixserve.services.worker.parallel.worker_group import LeaderRunner, build_rank

        runner = build_rank(self.runner_cfg, self.topo, 0, self.cfg.tp_timeout)
        self.leader = LeaderRunner(runner, self.workers.fail, TPMetrics(0, registry))
        return self.leader

    async def run_follower_host(self) -> TPHandle:
        """A host whose first rank is a follower: that rank runs on a thread of this process."""
        from radixserve.services.common.metrics import serve_metrics
        from radixserve.services.worker.metrics import TPMetrics
        from radixserve.services.worker.parallel.worker_group import build_rank, follower_loop

        def follow() -> None:
            runner = build_rank(self.runner_cfg, self.topo, self.rank, self.cfg.tp_timeout)
            metrics = TPMetrics(self.rank)
            if self.cfg.metrics_port > 0:
                serve_metrics(metrics.registry, self.cfg.metrics_port + self.rank)
            code = follower_loop(runner, metrics)
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
    from radixserve.services.common.model_source import resolve_model
    from radixserve.services.worker.loader import read_config
    from radixserve.services.worker.parallel.shapes import check_tp

    check_tp(read_config(resolve_model(runner_cfg.model, runner_cfg.load_format)), tp)
