"""Profile a serving workload: a torch-profiler Chrome trace of a serving window, and Nsight
Compute metrics by kernel group (KERNEL_GUIDE.md Part 5, as one command).

    python bench/profile/profile.py all      # = make profile: trace, then ncu by kernel group
    python bench/profile/profile.py trace    # Chrome trace only (works on CPU too)
    python bench/profile/profile.py ncu      # ncu only (GPU)
    python bench/profile/profile.py workload # the serving window ncu attaches to

The services run in this process (worker, scheduler, tokenizer on loopback, as in the tests) with
dummy weights of ``--config`` on a GPU, the embedded model on a CPU. A window is N concurrent
streamed requests after a warm-up (Triton compiles, CUDA graphs captured). ``trace`` starts and
stops profiling through the front door's ``/start_profile`` / ``/stop_profile`` (the live-engine
path); ``workload`` brackets the window with cudaProfilerStart/Stop for ``ncu
--profile-from-start off``. Outputs go to ``--out`` (default bench/profile/out).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "services"), str(ROOT / "kernels")]  # the source roots

import httpx  # noqa: E402
import openai  # noqa: E402

from tests.stack import Stack, start_stack  # noqa: E402

logger = logging.getLogger("profile")


def _start(args: argparse.Namespace) -> Stack:
    import torch

    worker = {"max_rows": max(16, args.concurrency)}
    if torch.cuda.is_available():
        worker |= {"model": args.config, "load_format": "dummy", "device": "cuda"}
    else:
        worker |= {"num_slots": 4096}
    return start_stack(worker=worker)


def _window(stack: Stack, args: argparse.Namespace) -> float:
    """N concurrent streamed requests; returns the seconds it took."""
    client = openai.OpenAI(base_url=f"{stack.http_url}/v1", api_key="unused", max_retries=0)
    model = client.models.list().data[0].id
    prompt = "Tell me a long story about a lighthouse keeper. " * max(1, args.input_len // 10)

    def one(i: int) -> int:
        stream = client.completions.create(
            model=model, prompt=f"{i} {prompt}", max_tokens=args.output_len, stream=True,
            extra_body={"ignore_eos": True},
        )  # fmt: skip
        return sum(1 for _ in stream)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(one, range(args.concurrency)))
    return time.perf_counter() - start


def trace(args: argparse.Namespace) -> Path:
    stack = _start(args)
    try:
        _window(stack, _warmup(args))
        http = httpx.Client(base_url=stack.http_url, timeout=300)
        started = http.post("/start_profile", json={"output_dir": str(args.out / "raw")})
        started.raise_for_status()
        seconds = _window(stack, args)
        stopped = http.post("/stop_profile")
        stopped.raise_for_status()
        engine = stopped.json()["engines"][0]
    finally:
        stack.stop()
    path = args.out / "serving.trace.json"
    shutil.copyfile(engine["trace_path"], path)
    print(f"trace: {path} ({engine['num_steps']} steps, window {seconds:.1f}s)")
    print("open it in https://ui.perfetto.dev or chrome://tracing")
    _summary(path)
    return path


def _summary(path: Path) -> None:
    """Top ranges by total duration (our step / phase / layer ranges and the kernels)."""
    events = json.loads(path.read_text())["traceEvents"]
    total: Counter[str] = Counter()
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            total[e["name"][:70]] += e["dur"]
    for name, us in total.most_common(15):
        print(f"  {us / 1e3:10.1f} ms  {name}")


def _warmup(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "output_len": 8})


def workload(args: argparse.Namespace) -> None:
    import torch

    stack = _start(args)
    try:
        _window(stack, _warmup(args))
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.profiler.start()
        seconds = _window(stack, args)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.profiler.stop()
        print(f"window: {args.concurrency} streams x {args.output_len} tokens in {seconds:.1f}s")
    finally:
        stack.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["all", "trace", "ncu", "workload"])
    p.add_argument("--config", default=str(ROOT / "bench/configs/llama-3-8b.json"))
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument("--launch-count", type=int, default=40, help="ncu: kernels per group")
    p.add_argument("--out", type=Path, default=ROOT / "bench/profile/out")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RADIXSERVE_LOG_LEVEL", "WARNING")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "workload":
        workload(args)
        return
    if args.what in ("all", "trace"):
        trace(args)
    if args.what in ("all", "ncu"):
        from bench.profile.ncu import profile_groups

        profile_groups(args)


if __name__ == "__main__":
    main()
