"""All-reduce latency on one host's GPUs: NCCL against a one-shot all-reduce over peer buffers.

A batch-1 decode step of Llama-3-8B at TP=N runs 64 all-reduces of 8 KB (hidden 4096, bf16): NCCL's
small-message latency, not bandwidth, decides the step. This measures, for each message size, the
mean time per all-reduce of

  nccl        ``dist.all_reduce`` (eager, one launch per op)
  nccl-graph  the same captured in a CUDA graph (as the decode graphs run it)
  oneshot     torch symmetric memory's one-shot all-reduce (every rank reads every peer's buffer
              over NVLink peer-to-peer and sums; no multicast), eager and graph-captured
  twoshot     reduce-scatter + all-gather over the same peer buffers, graph-captured

and checks each result against NCCL's. Multicast stays off (NCCL_NVLS_ENABLE=0,
TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1: it can take a shared host's GPUs out
of service).

    python bench/bench_allreduce.py --world-size 2 --out bench/results/allreduce-h200x2.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys

for _k, _v in (
    ("NCCL_NVLS_ENABLE", "0"),
    ("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1"),
    ("NVSHMEM_DISABLE_NVLS", "1"),
):
    os.environ[_k] = _v

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

SIZES_KB = [8, 32, 128, 512, 1024, 4096, 32768]
OPS_PER_GRAPH = 64  # a batch-1 decode step's all-reduce count


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _time_graph(fn, iters: int) -> float:
    """Mean µs per op of ``fn`` captured ``OPS_PER_GRAPH`` times in a graph replayed ``iters``."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(OPS_PER_GRAPH):
            fn()
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    dist.barrier()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / (iters * OPS_PER_GRAPH)


def _time_eager(fn, iters: int) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    dist.barrier()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / iters


def _worker(rank: int, world: int, port: int, out_path: str | None, iters: int) -> None:
    torch.cuda.set_device(rank)
    dist.init_process_group(
        "nccl",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        device_id=torch.device("cuda", rank),
    )
    dev = torch.device("cuda", rank)
    group = dist.group.WORLD.group_name
    rows: list[dict] = []
    symm = None
    try:
        import torch.distributed._symmetric_memory as symm_mem

        cap = max(SIZES_KB) * 1024 // 2
        symm = symm_mem.empty(cap, dtype=torch.bfloat16, device=dev)
        symm_mem.rendezvous(symm, group)
    except Exception as exc:  # noqa: BLE001 - report and go on with NCCL alone
        if rank == 0:
            print(f"symmetric memory unavailable: {exc!r}", flush=True)
        symm = None
    for kb in SIZES_KB:
        n = kb * 1024 // 2
        gen = torch.Generator(device=dev).manual_seed(rank + 1)
        src = torch.randn(n, dtype=torch.bfloat16, device=dev, generator=gen)
        ref = src.float().clone()
        dist.all_reduce(ref)
        buf = src.clone()
        row: dict = {"kb": kb}
        row["nccl_us"] = _time_eager(lambda b=buf: dist.all_reduce(b), iters)
        row["nccl_graph_us"] = _time_graph(lambda b=buf: dist.all_reduce(b), iters)
        if symm is not None:
            view, out = symm[:n], torch.empty_like(src)

            def one_shot(view=view, out=out, src=src) -> None:
                view.copy_(src)
                torch.ops.symm_mem.one_shot_all_reduce_out(view, "sum", group, out=out)

            def two_shot(view=view, src=src) -> None:
                view.copy_(src)
                torch.ops.symm_mem.two_shot_all_reduce_(view, "sum", group)

            try:
                one_shot()
                torch.cuda.synchronize()
                row["oneshot_max_err"] = (out.float() - ref).abs().max().item()
                row["oneshot_us"] = _time_eager(one_shot, iters)
                row["oneshot_graph_us"] = _time_graph(one_shot, iters)
                two_shot()
                torch.cuda.synchronize()
                row["twoshot_max_err"] = (view.float() - ref).abs().max().item()
                row["twoshot_graph_us"] = _time_graph(two_shot, iters)
            except Exception as exc:  # noqa: BLE001
                row["symm_error"] = repr(exc)[:300]
        rows.append(row)
        if rank == 0:
            print(json.dumps(row), flush=True)
    if rank == 0 and out_path:
        meta = {
            "gpu": torch.cuda.get_device_name(0),
            "world_size": world,
            "torch": torch.__version__,
            "ops_per_graph": OPS_PER_GRAPH,
            "rows": rows,
        }
        with open(out_path, "w") as f:
            json.dump(meta, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world-size", type=int, default=torch.cuda.device_count())
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.world_size < 2:
        sys.exit(f"--world-size: need at least 2 GPUs, have {torch.cuda.device_count()}")
    mp.spawn(
        _worker, args=(args.world_size, _free_port(), args.out, args.iters), nprocs=args.world_size
    )


if __name__ == "__main__":
    main()
