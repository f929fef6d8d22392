"""Scheduler micro-benchmark: CPU time per scheduling decision (next_step + on_result).

Pure CPU, no worker: a stub answers every step at once with fixed token ids. The overlap loop is
mimicked (step N+1 is built before result N is applied). Run: ``python bench/bench_scheduler.py``.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import deque

from radixserve.common.types import ModelInfo, SamplingParams, StepInput, StepOutput
from radixserve.scheduler.request import Request
from radixserve.scheduler.scheduler import Scheduler, SchedulerCoreConfig


def stub_result(step: StepInput, token: int = 7) -> StepOutput:
    return StepOutput(step.step_id, [token if r.sample else -1 for r in step.reqs])


def build(args: argparse.Namespace, page_size: int, cache: bool) -> Scheduler:
    per_req = args.prompt_len + args.decode_steps + args.warmup + 64
    info = ModelInfo(
        model_name="bench",
        vocab_size=32000,
        max_context_len=per_req + 1024,
        num_slots=args.batch * per_req * 2 + page_size * args.batch,
        max_rows=args.batch + 8,
        eos_token_ids=(2,),
        page_size=page_size,
    )
    cfg = SchedulerCoreConfig(
        max_running_requests=args.batch, page_size=page_size, disable_radix_cache=not cache
    )
    return Scheduler(cfg, info)


def add_requests(sched: Scheduler, n: int, args: argparse.Namespace, rng: random.Random) -> None:
    shared = [rng.randrange(3, 32000) for _ in range(args.prompt_len // 2)]
    for _ in range(n):
        tail = [rng.randrange(3, 32000) for _ in range(args.prompt_len - len(shared))]
        sp = SamplingParams(max_new_tokens=args.decode_steps + args.warmup + 32, ignore_eos=True)
        sched.add_request(Request(f"r{rng.random()}", shared + tail, sp))


def run_loop(sched: Scheduler, steps: int) -> tuple[float, int]:
    """Overlapped loop; returns (seconds spent in the core, steps run)."""
    pending: deque[StepOutput] = deque()
    spent = 0.0
    done = 0
    for _ in range(steps):
        t0 = time.perf_counter()
        step = sched.next_step()
        t1 = time.perf_counter()
        if step is not None:
            pending.append(stub_result(step))
            done += 1
        t2 = time.perf_counter()
        if pending and (len(pending) > 1 or step is None):
            sched.on_result(pending.popleft())
        spent += (t1 - t0) + (time.perf_counter() - t2)
    while pending:
        sched.on_result(pending.popleft())
    return spent, done


def bench_decode(args: argparse.Namespace, page_size: int, cache: bool) -> None:
    best = float("inf")
    for _ in range(args.repeat):
        sched = build(args, page_size, cache)
        add_requests(sched, args.batch, args, random.Random(0))
        run_loop(sched, args.warmup)  # prefill everything, reach steady decode
        assert sched.num_running == args.batch and sched.num_waiting == 0
        spent, steps = run_loop(sched, args.decode_steps)
        best = min(best, spent / steps)
    per = best
    print(
        f"decode  batch={args.batch:4d} page_size={page_size:3d} cache={cache!s:5}: "
        f"{per * 1e6:8.1f} us/step ({per * 1e9 / args.batch:6.0f} ns/request), "
        f"best of {args.repeat}"
    )


def bench_churn(args: argparse.Namespace) -> None:
    """Requests finish and arrive all the time (prefix cache on): admission + release cost."""
    sched = build(args, 1, True)
    rng = random.Random(1)
    pending: deque[StepOutput] = deque()
    spent, steps = 0.0, 0
    add_requests(sched, args.batch, args, rng)
    for i in range(args.decode_steps):
        if i % 4 == 0 and sched.num_running > args.batch - 16:
            for rid in list(sched.running)[:4]:
                sched.abort(rid)
            add_requests(sched, 4, args, rng)
        t0 = time.perf_counter()
        step = sched.next_step()
        if step is not None:
            pending.append(stub_result(step))
            steps += 1
        if pending and (len(pending) > 1 or step is None):
            sched.on_result(pending.popleft())
        spent += time.perf_counter() - t0
    per = spent / steps * 1e6
    print(f"churn   batch~{args.batch:4d} (4 new + 4 aborted / 4 steps): {per:8.1f} us/step")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--decode-steps", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = ap.parse_args()
    for page_size, cache in ((1, True), (1, False), (16, True)):
        bench_decode(args, page_size, cache)
    bench_churn(args)


if __name__ == "__main__":
    main()
