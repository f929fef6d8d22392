"""Where the ranks of a TP group run: flags, or the environment of torchrun or LeaderWorkerSet.

* One host: ``--tp N`` starts N ranks here (rank 0 serves, the others are child processes).
* Several hosts, one process per host: ``--nnodes``/``--node-rank`` (or LeaderWorkerSet's
  ``LWS_GROUP_SIZE``/``LWS_WORKER_INDEX``, rendezvous at ``LWS_LEADER_ADDRESS``); each host starts
  ``tp / nnodes`` ranks.
* One process per rank (torchrun style): ``RANK`` and ``WORLD_SIZE`` (and ``LOCAL_RANK``).

``MASTER_ADDR``/``MASTER_PORT`` name the rendezvous unless the flags do. Only global rank 0
serves gRPC.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

DEFAULT_PORT = 29500


@dataclass(frozen=True)
class Topology:
    world_size: int
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = DEFAULT_PORT
    local_rank_offset: int = 0  # torchrun: this process's LOCAL_RANK (its GPU index)

    @property
    def per_node(self) -> int:
        return self.world_size // self.nnodes

    @property
    def ranks(self) -> range:
        """The global ranks this process starts (the first one runs in it)."""
        return range(self.node_rank * self.per_node, (self.node_rank + 1) * self.per_node)

    @property
    def init_method(self) -> str:
        return f"tcp://{self.master_addr}:{self.master_port}"

    def local_index(self, rank: int) -> int:
        """The GPU index of ``rank`` on its host."""
        return self.local_rank_offset + rank - self.ranks.start


def resolve_topology(
    tp: int,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str = "",
    master_port: int = 0,
    env: Mapping[str, str] | None = None,
) -> Topology:
    """The group this process belongs to; ValueError naming the field when inconsistent."""
    env = os.environ if env is None else env
    local = 0
    if "RANK" in env and "WORLD_SIZE" in env and int(env["WORLD_SIZE"]) > 1:
        tp, nnodes, node_rank = int(env["WORLD_SIZE"]), int(env["WORLD_SIZE"]), int(env["RANK"])
        local = int(env.get("LOCAL_RANK", "0"))
    elif "LWS_GROUP_SIZE" in env and nnodes == 1:
        nnodes, node_rank = int(env["LWS_GROUP_SIZE"]), int(env.get("LWS_WORKER_INDEX", "0"))
        master_addr = master_addr or env.get("LWS_LEADER_ADDRESS", "")
    if tp < 1 or nnodes < 1 or tp % nnodes:
        raise ValueError(f"tp ({tp}) must be a positive multiple of nnodes ({nnodes})")
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"node_rank ({node_rank}) must be in [0, nnodes={nnodes})")
    addr = master_addr or env.get("MASTER_ADDR", "") or "127.0.0.1"
    port = master_port or int(env.get("MASTER_PORT", "0"))
    if not port:
        port = _free_port() if nnodes == 1 else DEFAULT_PORT
    return Topology(tp, nnodes, node_rank, addr, port, local)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
