"""Serving benchmark through all three services over gRPC (each service its own process).

Starts worker, scheduler and tokenizer (like ``services.launch``) with dummy weights of a Llama
config, then measures through the public TokenizerService:
  batch 1     one request at a time: time to first token and decode tokens/s
  concurrent  N requests at once: output tokens/s

    python bench/bench_serving.py --config bench/configs/llama-3-8b.json --out result.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from radixserve.v1 import common_pb2, tokenizer_pb2, tokenizer_pb2_grpc  # noqa: E402
from services.launch import _ready  # noqa: E402

ADDRESS = "127.0.0.1:50051"


def start(args: argparse.Namespace) -> list[subprocess.Popen]:
    model = ["--model", args.config, "--load-format", "dummy"]
    env = {**os.environ, "RADIXSERVE_LOG_LEVEL": "WARNING"}
    if args.switch_interval:
        env["RADIXSERVE_SWITCH_INTERVAL"] = str(args.switch_interval)
    cmds = [
        ["services.worker", "--host", "127.0.0.1", *model, "--max-rows", "300"]
        + ["--step-thread", "true" if args.step_thread else "false"],
        ["services.scheduler", "--host", "127.0.0.1", "--metrics-port", "0"],
        ["services.tokenizer", "--host", "127.0.0.1", "--http-port", "-1", *model],
    ]
    procs = [subprocess.Popen([sys.executable, "-m", *c], cwd=ROOT, env=env) for c in cmds]
    deadline = time.monotonic() + 600
    while not _ready(ADDRESS):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            stop(procs)
            raise RuntimeError("services did not come up")
        time.sleep(1)
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


async def one(stub, ids: list[int], out_len: int) -> tuple[float, float, int]:
    """(ttft, total seconds, tokens) of one streamed request."""
    req = tokenizer_pb2.GenerateRequest(
        token_ids=tokenizer_pb2.TokenIdsInput(ids=ids),
        sampling=common_pb2.SamplingParams(temperature=0, max_new_tokens=out_len, ignore_eos=True),
    )
    start = time.perf_counter()
    ttft, n = 0.0, 0
    async for resp in stub.Generate(req, timeout=600):
        if not n and resp.token_ids:
            ttft = time.perf_counter() - start
        n += len(resp.token_ids)
    return ttft, time.perf_counter() - start, n


async def measure(args: argparse.Namespace, vocab: int) -> dict:
    rng = random.Random(0)
    prompt = lambda n: [rng.randrange(10, vocab) for _ in range(n)]  # noqa: E731
    async with grpc.aio.insecure_channel(ADDRESS) as channel:
        stub = tokenizer_pb2_grpc.TokenizerServiceStub(channel)
        await one(stub, prompt(16), 8)  # warm-up
        singles = [await one(stub, prompt(args.input_len), args.output_len) for _ in range(3)]
        ttft, total, n = min(singles, key=lambda r: r[1])
        decode_tps = (n - 1) / (total - ttft)
        print(f"batch 1: ttft {ttft * 1e3:.1f} ms, decode {decode_tps:.1f} tok/s", flush=True)
        start = time.perf_counter()
        many = await asyncio.gather(
            *(one(stub, prompt(args.input_len), args.output_len) for _ in range(args.concurrency))
        )
        seconds = time.perf_counter() - start
        tokens = sum(r[2] for r in many)
        print(f"concurrency {args.concurrency}: {tokens / seconds:.0f} output tok/s", flush=True)
    return {
        "batch1": {"ttft_ms": ttft * 1e3, "decode_tok_per_s": decode_tps, "tokens": n},
        "concurrent": {
            "requests": args.concurrency,
            "seconds": seconds,
            "output_tokens": tokens,
            "output_tok_per_s": tokens / seconds,
            "median_ttft_ms": sorted(r[0] for r in many)[len(many) // 2] * 1e3,
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "bench/configs/llama-3-8b.json"))
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--step-thread", type=int, default=0, help="worker steps on a thread (1/0)")
    p.add_argument("--switch-interval", type=float, default=0.0, help="sys.setswitchinterval")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    vocab = json.loads(Path(args.config).read_text())["vocab_size"]
    print("starting worker, scheduler, tokenizer ...", flush=True)
    procs = start(args)
    try:
        result = asyncio.run(measure(args, vocab))
    finally:
        stop(procs)
    import torch

    result["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    result["args"] = vars(args)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
