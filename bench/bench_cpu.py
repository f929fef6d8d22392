"""CPU: the embedded SmolLM2-135M through all three services vs transformers' ``generate``.

Same weights (transformers gets our GGUF loader's dequantized tensors), same machine, same
threads, measured side by side in one run, alternating per batch size: greedy decoding of
exactly ``--new-tokens`` tokens (``ignore_eos`` / ``min_new_tokens``) for batches of equal-length
random prompts. Our side goes through the OpenAI HTTP API (streaming) of the three services
started as processes; the figure is output tokens per second of wall time, prefill included, the
best of ``--repeats`` runs on each side. Run it on a quiet machine::

    python bench/bench_cpu.py --batch-sizes 1 8 --new-tokens 128 --out bench/results/cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services"), str(ROOT / "kernels")]  # the source roots
# NOTE: before torch loads: idle OpenMP threads that spin (one side waiting while the other runs)
# would steal the two cores from the side being measured. The services inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from bench.serving.backends import completion_payload, openai_request  # noqa: E402
from bench.serving.datasets import BenchRequest  # noqa: E402

logger = logging.getLogger("bench_cpu")
VOCAB = 49152  # the embedded model's


def hf_model_from_gguf() -> torch.nn.Module:
    """transformers' Llama holding the embedded GGUF's tensors, dequantized to float32."""
    from radixserve.common.model_source import embedded_gguf_path
    from radixserve.worker.loader import gguf as gguf_loader

    return gguf_loader.transformers_llama(embedded_gguf_path()).float()


def prompts(batch: int, length: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(10, VOCAB) for _ in range(length)] for _ in range(batch)]


def time_hf(model: torch.nn.Module, batch: list[list[int]], new_tokens: int) -> dict:
    ids = torch.tensor(batch)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
            min_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    tokens = (out.shape[1] - ids.shape[1]) * out.shape[0]
    return {"seconds": seconds, "output_tokens": tokens, "output_tok_per_s": tokens / seconds}


async def _time_ours(base_url: str, batch: list[list[int]], new_tokens: int) -> dict:
    import httpx

    url = f"{base_url}/v1/completions"
    model = (await _models(base_url))[0]
    async with httpx.AsyncClient(timeout=None) as client:
        reqs = [BenchRequest(p, new_tokens) for p in batch]
        start = time.perf_counter()
        results = await asyncio.gather(
            *(openai_request(client, url, completion_payload(model, r, {}), r) for r in reqs)
        )
        seconds = time.perf_counter() - start
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError(f"request failed: {errors[0]}")
    tokens = sum(r.output_len for r in results)
    ttft = sorted(r.ttft for r in results)[len(results) // 2]
    return {
        "seconds": seconds,
        "output_tokens": tokens,
        "output_tok_per_s": tokens / seconds,
        "median_ttft_ms": ttft * 1e3,
    }


async def _models(base_url: str) -> list[str]:
    import httpx

    async with httpx.AsyncClient() as client:
        resp = await client.get(f"{base_url}/v1/models")
        return [m["id"] for m in resp.json()["data"]]


def best(runs: list[dict]) -> dict:
    return {**max(runs, key=lambda r: r["output_tok_per_s"]), "runs": len(runs)}


def measure(args: argparse.Namespace, base_url: str, model: torch.nn.Module) -> list[dict]:
    rows = []
    time_hf(model, prompts(1, 8, seed=-1), 4)  # warm-up
    asyncio.run(_time_ours(base_url, prompts(1, 8, seed=-1), 4))
    for bs in args.batch_sizes:
        batch = prompts(bs, args.prompt_len, seed=bs)
        hf_runs, our_runs = [], []
        for _ in range(args.repeats):  # alternate, so drifting machine load hits both sides
            hf_runs.append(time_hf(model, batch, args.new_tokens))
            our_runs.append(asyncio.run(_time_ours(base_url, batch, args.new_tokens)))
        row = {"batch_size": bs, "transformers": best(hf_runs), "radixserve": best(our_runs)}
        row["ratio"] = (
            row["radixserve"]["output_tok_per_s"] / row["transformers"]["output_tok_per_s"]
        )
        logger.info(
            "batch %d: radixserve %.1f tok/s, transformers %.1f tok/s (%.2fx)", bs,
            row["radixserve"]["output_tok_per_s"], row["transformers"]["output_tok_per_s"],
            row["ratio"],
        )  # fmt: skip
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker-args", default="--max-rows 16", help="extra worker flags")
    p.add_argument("--out", default=str(ROOT / "bench/results/cpu.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from bench.serving.launch import start_services

    logger.info("loading transformers' model from the GGUF ...")
    model = hf_model_from_gguf()
    logger.info("starting worker, scheduler, tokenizer (embedded model) ...")
    services = start_services(["--load-format", "auto"], args.worker_args.split())
    try:
        rows = measure(args, services.base_url, model)
    finally:
        services.stop()
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "load_avg_at_end": os.getloadavg(),
        },
        "config": vars(args),
        "results": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
