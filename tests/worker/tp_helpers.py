"""Run a function on ``size`` gloo ranks (spawned processes on loopback, a free port)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import torch
import torch.multiprocessing as mp

from services.worker.parallel import TPGroup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, fn: Callable, size: int, port: int, args: tuple) -> None:
    torch.set_num_threads(1)  # NOTE: several ranks share two cores; spinning threads starve them
    os.environ.setdefault("TRITON_INTERPRET", "1")
    group = TPGroup.init(rank, size, "cpu", f"tcp://127.0.0.1:{port}", timeout_s=60)
    try:
        fn(group, *args)
    finally:
        group.destroy()


def run_ranks(fn: Callable, size: int, *args: object) -> None:
    """``fn(group, *args)`` on every rank; an exception on any rank fails the call."""
    mp.start_processes(
        _entry, args=(fn, size, free_port(), args), nprocs=size, join=True, start_method="spawn"
    )
