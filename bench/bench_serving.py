"""Online serving benchmark: any OpenAI-compatible endpoint, or our gRPC front door.

Sends streamed, greedy, ``ignore_eos`` requests (so output lengths are exact) at a Poisson rate
or all at once, under an optional concurrency cap, and reports request / output / total token
throughput and TTFT, ITL (gaps between output chunks), TPOT ((E2E - TTFT) / (out - 1)) and E2E
mean, p50 and p99. Token counts come from the server's usage (``include_usage``).

Against a running server (ours, vLLM's or SGLang's; prompts are token ids, or text decoded with
``--tokenizer MODEL`` for servers that take only text)::

    python bench/bench_serving.py --base-url http://127.0.0.1:8000 --vocab-size 128256 \\
        --dataset random --num-prompts 500 --input-len 4096 --output-len 2048

Starting our three services itself (dummy weights of a config), over HTTP or gRPC::

    python bench/bench_serving.py --launch --config bench/configs/llama-3-8b.json \\
        --backend grpc --dataset fixed --num-prompts 64 --input-len 128 --output-len 256

Without ``--base-url`` or ``--grpc-address`` it launches (``make bench-serving``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services"), str(ROOT / "kernels")]  # the source roots

import httpx  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from bench.serving import datasets  # noqa: E402
from bench.serving.backends import (  # noqa: E402
    RequestResult,
    completion_payload,
    grpc_request,
    openai_request,
)
from bench.serving.stats import report, summarize  # noqa: E402

logger = logging.getLogger("bench_serving")

Send = Callable[[datasets.BenchRequest], Awaitable[RequestResult]]


def build_requests(args: argparse.Namespace, vocab_size: int) -> list[datasets.BenchRequest]:
    if args.dataset == "random":
        return datasets.random_requests(
            args.num_prompts, args.input_len, args.output_len, args.random_range_ratio,
            vocab_size, args.seed,
        )  # fmt: skip
    if args.dataset == "fixed":
        return datasets.fixed_requests(
            args.num_prompts, args.input_len, args.output_len, vocab_size, args.seed
        )
    return datasets.shared_prefix_requests(
        args.gsp_num_groups, args.gsp_prompts_per_group, args.gsp_system_prompt_len,
        args.gsp_question_len, args.output_len, vocab_size, args.seed,
    )  # fmt: skip


async def run_requests(
    send: Send,
    reqs: list[datasets.BenchRequest],
    rate: float,
    max_concurrency: int | None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[list[RequestResult], float]:
    """Sends ``reqs`` with Poisson arrivals at ``rate`` req/s (inf: all at once)."""
    rng = random.Random(seed)
    limit = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    bar = tqdm(total=len(reqs), disable=not progress, desc="requests")

    async def one(req: datasets.BenchRequest) -> RequestResult:
        if limit is None:
            result = await send(req)
        else:
            async with limit:
                result = await send(req)
        bar.update(1)
        return result

    start = time.perf_counter()
    tasks = []
    for req in reqs:
        tasks.append(asyncio.create_task(one(req)))
        if math.isfinite(rate):
            await asyncio.sleep(rng.expovariate(rate))
    results = await asyncio.gather(*tasks)
    duration = time.perf_counter() - start
    bar.close()
    return list(results), duration


async def _openai_sender(args: argparse.Namespace, base_url: str) -> tuple[Send, Any]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    client = httpx.AsyncClient(timeout=httpx.Timeout(None), limits=limits)
    model = args.model or await _first_model(client, base_url)
    url = f"{base_url.rstrip('/')}/v1/completions"
    extra = json.loads(args.extra_body) if args.extra_body else {}

    async def send(req: datasets.BenchRequest) -> RequestResult:
        return await openai_request(client, url, completion_payload(model, req, extra), req)

    return send, client.aclose


async def _first_model(client: httpx.AsyncClient, base_url: str) -> str:
    resp = await client.get(f"{base_url.rstrip('/')}/v1/models")
    resp.raise_for_status()
    return resp.json()["data"][0]["id"]


async def _grpc_sender(address: str) -> tuple[Send, Any]:
    import grpc

    from radixserve.v1 import tokenizer_pb2_grpc

    channel = grpc.aio.insecure_channel(address)
    stub = tokenizer_pb2_grpc.TokenizerServiceStub(channel)

    async def send(req: datasets.BenchRequest) -> RequestResult:
        return await grpc_request(stub, req)

    return send, channel.close


async def benchmark(args: argparse.Namespace, base_url: str, grpc_address: str) -> dict:
    """Warm-up, then the measured run; the summary with the full configuration."""
    if args.backend == "openai":
        send, close = await _openai_sender(args, base_url)
    else:
        send, close = await _grpc_sender(grpc_address)
    try:
        reqs = build_requests(args, args.vocab_size)
        if args.tokenizer and args.backend == "openai":
            reqs = datasets.as_text(reqs, _decoder(args.tokenizer, args.tokenizer_load_format))
        warm = datasets.fixed_requests(args.warmup_requests, 16, 4, args.vocab_size, seed=-1)
        for r in await asyncio.gather(*(send(w) for w in warm)):
            if r.error:
                raise RuntimeError(f"warm-up request failed: {r.error}")
        results, duration = await run_requests(
            send, reqs, args.request_rate, args.max_concurrency, args.seed, not args.disable_tqdm
        )
    finally:
        await close()
    summary = summarize(results, duration)
    summary["gpu"] = _gpu_name()
    summary["config"] = {k: v for k, v in vars(args).items()}
    summary["config"]["request_rate"] = str(args.request_rate)
    return summary


def _decoder(model: str, load_format: str) -> Callable[[list[int]], str]:
    """Our tokenizer loader: a .gguf file, an HF directory, or a dummy config (``dummy``)."""
    from radixserve.common.model_source import resolve_model
    from radixserve.common.vocab.loading import load_tokenizer

    tok = load_tokenizer(resolve_model(model, load_format))
    return lambda ids: tok.decode(ids, skip_special_tokens=True)


def _gpu_name() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=("openai", "grpc"), default="openai")
    p.add_argument("--base-url", default="", help="OpenAI-compatible server, e.g. http://h:8000")
    p.add_argument("--grpc-address", default="", help="our TokenizerService, e.g. 127.0.0.1:50051")
    p.add_argument("--model", default="", help="model name in requests (default: /v1/models)")
    p.add_argument("--launch", action="store_true", help="start our three services first")
    p.add_argument(
        "--config",
        default=str(ROOT / "bench/configs/llama-3-8b.json"),
        help="--launch: the model (a config.json for dummy; '' = the embedded SmolLM2)",
    )
    p.add_argument("--load-format", default="dummy", help="for --launch (dummy: random weights)")
    p.add_argument("--worker-args", default="--max-rows 300", help="extra worker flags (--launch)")
    p.add_argument("--step-thread", type=int, default=0, help="worker steps on a thread (1/0)")
    p.add_argument("--switch-interval", type=float, default=0.0, help="sys.setswitchinterval")
    p.add_argument(
        "--tokenizer",
        default="",
        help="send text prompts decoded with this model's tokenizer (openai backend): a .gguf,\n"
        "an HF directory, a config.json (--tokenizer-load-format dummy), smollm2-135m-instruct",
    )
    p.add_argument("--tokenizer-load-format", default="auto", help="auto, gguf, hf or dummy")
    p.add_argument("--vocab-size", type=int, default=0, help="prompt ids < this (default: config)")
    p.add_argument("--dataset", choices=datasets.DATASETS, default="random")
    p.add_argument("--num-prompts", type=int, default=200)
    p.add_argument("--input-len", type=int, default=1024)
    p.add_argument("--output-len", type=int, default=256)
    p.add_argument("--random-range-ratio", type=float, default=0.0, help="lengths U[r*L, L]")
    p.add_argument("--gsp-num-groups", type=int, default=8)
    p.add_argument("--gsp-prompts-per-group", type=int, default=16)
    p.add_argument("--gsp-system-prompt-len", type=int, default=2048)
    p.add_argument("--gsp-question-len", type=int, default=128)
    p.add_argument("--request-rate", type=float, default=math.inf, help="req/s; inf = at once")
    p.add_argument("--max-concurrency", type=int, default=0, help="0 = no cap")
    p.add_argument("--warmup-requests", type=int, default=1)
    p.add_argument("--extra-body", default="", help="JSON merged into each request body")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-file", "--out", dest="output_file", default="")
    p.add_argument("--disable-tqdm", action="store_true")
    args = p.parse_args(argv)
    if args.dataset == "shared-prefix":
        args.num_prompts = args.gsp_num_groups * args.gsp_prompts_per_group
    args.launch = args.launch or not (args.base_url or args.grpc_address)
    if not args.vocab_size:
        args.vocab_size = _config_vocab(args.config) if args.launch else 32000
    return args


def _config_vocab(config: str) -> int:
    path = Path(config)
    path = path / "config.json" if path.is_dir() else path
    if path.suffix == ".json" and path.is_file():
        return int(json.loads(path.read_text()).get("vocab_size", 32000))
    return 32000


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    args = parse_args(argv)
    services = None
    base_url, grpc_address = args.base_url, args.grpc_address
    if args.launch:
        from bench.serving.launch import start_services

        env = {"RADIXSERVE_SWITCH_INTERVAL": str(args.switch_interval)}
        worker = args.worker_args.split() + ["--step-thread", str(bool(args.step_thread)).lower()]
        logger.info("starting worker, scheduler, tokenizer (%s) ...", args.config)
        model = (["--model", args.config] if args.config else []) + [
            "--load-format",
            args.load_format,
        ]
        services = start_services(model, worker, env if args.switch_interval else None)
        base_url, grpc_address = services.base_url, services.grpc_address
    try:
        summary = asyncio.run(benchmark(args, base_url, grpc_address))
    finally:
        if services is not None:
            services.stop()
    print(report(summary), flush=True)
    if args.output_file:
        Path(args.output_file).write_text(json.dumps(summary, indent=2))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
