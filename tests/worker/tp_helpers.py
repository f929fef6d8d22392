"""Run a function on ``size`` gloo ranks (spawned processes on loopback, a free port)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import torch
import torch.multiprocessing as mp

from services.worker.parallel.group import TPGroup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(
    rank: int, fn: Callable, size: int, port: int, device: str, timeout_s: float, args: tuple
) -> None:
    torch.set_num_threads(1)  # NOTE: several ranks share two cores; spinning threads starve them
    if device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")
    dev = f"cuda:{rank}" if device == "cuda" else device
    group = TPGroup.init(rank, size, dev, f"tcp://127.0.0.1:{port}", timeout_s)
    try:
        fn(group, *args)
    finally:
        group.destroy()


def run_ranks(
    fn: Callable, size: int, *args: object, device: str = "cpu", timeout_s: float = 60
) -> None:
    """``fn(group, *args)`` on every rank (gloo on CPU; NCCL, rank r on ``cuda:r``, for
    ``device="cuda"``); an exception on any rank fails the call."""
    mp.start_processes(
        _entry,
        args=(fn, size, free_port(), device, timeout_s, args),
        nprocs=size,
        join=True,
        start_method="spawn",
    )


def greedy(runner: object, prompts: list[list[int]], max_new: int) -> list[list[int]]:
    """Prefill every prompt in one step, then decode them together (slots from a counter).

    Kept here, not in helpers.py, so spawned ranks do not import transformers.
    """
    from services.common.types import ForwardMode, ReqInput, SamplingParams, StepInput

    slots = iter(range(1, 1 << 30))
    greedy_params = SamplingParams(temperature=0.0)
    reqs = [
        ReqInput(row, [next(slots) for _ in p], p, None, greedy_params)
        for row, p in enumerate(prompts)
    ]
    out = runner.step(StepInput(0, ForwardMode.EXTEND, reqs))  # type: ignore[attr-defined]
    gen = [[t] for t in out.token_ids]
    for step_id in range(1, max_new):
        reqs = [ReqInput(row, [next(slots)]) for row in range(len(prompts))]
        out = runner.step(StepInput(step_id, ForwardMode.DECODE, reqs))  # type: ignore[attr-defined]
        for row, t in enumerate(out.token_ids):
            gen[row].append(t)
    runner.step(StepInput(max_new, ForwardMode.DECODE, [], list(range(len(prompts)))))  # type: ignore[attr-defined]
    return gen


def rank_generate(group: TPGroup, specs: dict, prompts: list, max_new: int, out_path: str) -> None:
    """Every rank builds each model on ``group``; rank 0 generates through a LeaderRunner (each
    step broadcast, then run everywhere), the others run ``follower_loop`` as a served worker's
    followers do. Rank 0 writes ``{name: tokens}`` as JSON to ``out_path``."""
    import json

    from services.worker.engine import ModelRunner, RunnerConfig
    from services.worker.metrics import TPMetrics
    from services.worker.parallel.worker_group import LeaderRunner, follower_loop

    results = {}
    for name, kw in specs.items():
        runner = ModelRunner(RunnerConfig(**{**kw, "device": str(group.device)}), group)
        if group.rank == 0:
            leader = LeaderRunner(runner, lambda reason: None, TPMetrics(0))
            results[name] = greedy(leader, prompts, max_new)
            leader.stop()
        elif follower_loop(runner, TPMetrics(group.rank)) != 0:
            raise RuntimeError(f"rank {group.rank}: follower loop failed")
    if group.rank == 0:
        with open(out_path, "w") as f:
            json.dump(results, f)
