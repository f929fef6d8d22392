"""Engine benchmarks: the scheduler core driving the model runner in one process (no gRPC).

Workloads:
  shared-prefix  many requests over a few long system prompts, radix cache on vs off (issue 4)
  offline        N prompts of fixed input/output length, all at once (vLLM's offline setting)

Every configuration runs in the same process on the same weights, so the ratio is fair. Prints
progress and a summary; ``--out`` writes JSON with the GPU's name.

    python bench/bench_engine.py --config bench/configs/llama-3-8b.json --workload shared-prefix
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services"), str(ROOT / "kernels")]  # the source roots

from radixserve.common.types import SamplingParams  # noqa: E402
from radixserve.scheduler.core_config import SchedulerCoreConfig  # noqa: E402
from radixserve.scheduler.request import Request  # noqa: E402
from radixserve.scheduler.scheduler import Scheduler  # noqa: E402
from radixserve.worker.engine import ModelRunner, RunnerConfig  # noqa: E402


def drive(runner: ModelRunner, core: Scheduler, reqs: list[Request]) -> dict:
    """Runs ``reqs`` to completion with one step in flight ahead, as the service does."""
    for r in reqs:
        core.add_request(r)
    in_flight: deque = deque()
    steps = out_tokens = 0
    start = time.perf_counter()
    last_report = start
    while core.has_work:
        while len(in_flight) < 2:
            step = core.next_step()
            if step is None:
                break
            in_flight.append(step)
        if not in_flight:
            if not core.has_work:
                break
            continue
        out = runner.step(in_flight.popleft())
        for ev in core.on_result(out):
            out_tokens += len(ev.token_ids)
        steps += 1
        now = time.perf_counter()
        if now - last_report > 5:
            print(f"  ... {steps} steps, {out_tokens} tokens, {now - start:.1f}s", flush=True)
            last_report = now
    runner_sync(runner)
    seconds = time.perf_counter() - start
    stats = core.stats()
    return {
        "seconds": seconds,
        "steps": steps,
        "output_tokens": out_tokens,
        "output_tok_per_s": out_tokens / seconds,
        "prompt_tokens": core.prompt_tokens_total,
        "cached_tokens": core.cached_tokens_total,
        "cache_hit_rate": stats.cache_hit_rate,
        "retractions": stats.num_retractions,
    }


def runner_sync(runner: ModelRunner) -> None:
    import torch

    if runner.device.type == "cuda":
        torch.cuda.synchronize()


def shared_prefix_requests(args: argparse.Namespace, vocab: int, tag: str) -> list[Request]:
    rng = random.Random(args.seed)
    prefixes = [
        [rng.randrange(10, vocab) for _ in range(args.prefix_len)] for _ in range(args.num_prefixes)
    ]
    reqs = []
    for i in range(args.num_requests):
        ids = prefixes[i % args.num_prefixes] + [
            rng.randrange(10, vocab) for _ in range(args.question_len)
        ]
        sp = SamplingParams(temperature=0, max_new_tokens=args.output_len, ignore_eos=True)
        reqs.append(Request(rid=f"{tag}-{i}", input_ids=ids, sampling=sp))
    return reqs


def offline_requests(
    args: argparse.Namespace, vocab: int, tag: str, sp: SamplingParams | None = None
) -> list[Request]:
    """``args.num_requests`` random prompts of ``args.input_len``; greedy and exact by default."""
    rng = random.Random(args.seed)
    sp = sp or SamplingParams(temperature=0, max_new_tokens=args.output_len, ignore_eos=True)
    return [
        Request(
            rid=f"{tag}-{i}",
            input_ids=[rng.randrange(10, vocab) for _ in range(args.input_len)],
            sampling=sp,
        )
        for i in range(args.num_requests)
    ]


def core_for(runner: ModelRunner, cache: bool, args: argparse.Namespace) -> Scheduler:
    cfg = SchedulerCoreConfig(
        disable_radix_cache=not cache,
        max_running_requests=min(args.max_running, runner.info.max_rows),
        chunked_prefill_size=args.chunk,
        max_prefill_tokens=args.chunk,
    )
    return Scheduler(cfg, runner.info)


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default=str(Path(__file__).parent / "configs/llama-3-8b.json"))
    p.add_argument("--workload", choices=["shared-prefix", "offline"], default="shared-prefix")
    p.add_argument("--backend", default=None, help="attention backend (default: per device)")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--num-requests", type=int, default=128)
    p.add_argument("--num-prefixes", type=int, default=4)
    p.add_argument("--prefix-len", type=int, default=2048)
    p.add_argument("--question-len", type=int, default=32)
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--max-running", type=int, default=256)
    p.add_argument("--chunk", type=int, default=8192)
    p.add_argument("--num-slots", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    print(f"loading dummy weights for {args.config} ...", flush=True)
    runner = ModelRunner(
        RunnerConfig(
            model=args.config,
            load_format="dummy",
            dtype=args.dtype,
            attention_backend=args.backend,
            num_slots=args.num_slots,
            max_rows=max(args.max_running + 1, 8),
        )
    )
    info = runner.info
    print(f"{info.model_name}: {info.num_slots} KV slots on {info.device} ({gpu_name()})")
    make = shared_prefix_requests if args.workload == "shared-prefix" else offline_requests
    # Warm-up (kernel compilation, allocator) on a few requests, not measured.
    drive(runner, core_for(runner, True, args), make(args, info.vocab_size, "warm")[:4])
    runs = {}
    for cache in (False, True) if args.workload == "shared-prefix" else (True,):
        name = "cache_on" if cache else "cache_off"
        print(f"running {args.workload} with {name} ...", flush=True)
        runs[name] = drive(runner, core_for(runner, cache, args), make(args, info.vocab_size, name))
        r = runs[name]
        print(
            f"  {name}: {r['seconds']:.2f}s, {r['output_tok_per_s']:.0f} output tok/s, "
            f"hit rate {r['cache_hit_rate']:.2f}",
            flush=True,
        )
    result = {
        "gpu": gpu_name(),
        "workload": args.workload,
        "args": vars(args),
        "attention_backend": runner.attn_backend.name,
        "dtype": info.dtype,
        "runs": runs,
    }
    if "cache_off" in runs:
        result["speedup"] = (
            runs["cache_on"]["output_tok_per_s"] / runs["cache_off"]["output_tok_per_s"]
        )
        print(f"radix cache speed-up: {result['speedup']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
