"""Tensor-parallel benchmark: batch-1 decode and offline throughput, one fresh process per arm.

Arms (each a subprocess, so each starts from a clean GPU and imports its own tree):
  base      the code before TP (``--baseline-root``, e.g. a ``git worktree`` of main's commit)
  tp1       this tree at TP=1 (layers hold no group: the path every single-GPU worker takes)
  tp1-group this tree at TP=1 through the served TP path (TPGroup + LeaderRunner broadcast)
  tpN       this tree at TP=N (``--tp N``): N ranks on N GPUs, rank 0 here, followers spawned

The target for the abstraction: tp1 and tp1-group within 2 % of base, in the same run.

    python bench/bench_tp.py --baseline-root /tmp/radixserve-base --tp 2 --out tp.json
    python bench/bench_tp.py --config bench/configs/tiny-llama.json --arms tp1,tp1-group  # CPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _build_runner(arm: str, args: argparse.Namespace):  # noqa: ANN202 - tree-dependent types
    from radixserve.worker.engine import ModelRunner, RunnerConfig

    cfg = RunnerConfig(
        model=args.config,
        load_format="dummy",
        dtype=args.dtype,
        num_slots=args.num_slots,
        max_rows=max(args.num_requests + 1, 8),
        max_context_len=args.input_len + args.output_len + 8,
    )
    if arm in ("base", "tp1"):
        return ModelRunner(cfg), None
    from radixserve.worker.config import WorkerConfig
    from radixserve.worker.parallel.launch import TPLaunch

    size = 1 if arm == "tp1-group" else int(arm.removeprefix("tp"))
    launch = TPLaunch(WorkerConfig(tp=size, metrics_port=0), cfg)
    return launch.build_leader(None), launch


def run_arm(arm: str, root: str, args: argparse.Namespace) -> dict:
    """In the child: measure ``arm`` with ``root``'s code first on the path."""
    # The tree's source roots (this layout: services/ and kernels/; an older one: the root).
    sys.path[:0] = [root, os.path.join(root, "services"), os.path.join(root, "kernels")]
    sys.path.insert(0, os.path.join(root, "bench"))
    import bench_engine as be  # the tree's own driver (same as bench_engine.py's numbers)

    runner, launch = _build_runner(arm, args)
    info = runner.info

    def run(a: argparse.Namespace, tag: str) -> dict:
        reqs = be.offline_requests(a, info.vocab_size, tag)
        return be.drive(runner, be.core_for(runner, True, a), reqs)

    try:
        run(argparse.Namespace(**{**vars(args), "num_requests": 4}), "warm")
        one = argparse.Namespace(**{**vars(args), "num_requests": 1})
        single = [run(one, f"b1-{i}") for i in range(args.repeats)]
        offline = [run(args, f"o-{i}") for i in range(args.repeats)]
    finally:
        if launch is not None:
            launch.stop()
    return {
        "arm": arm,
        "root": root,
        "device": info.device,
        "gpu": be.gpu_name(),
        "batch1_tok_per_s": max(r["output_tok_per_s"] for r in single),
        "offline_tok_per_s": max(r["output_tok_per_s"] for r in offline),
    }


def spawn_arm(arm: str, root: str, argv: list[str]) -> dict:
    out = Path(f"/tmp/bench_tp_{os.getpid()}_{arm}.json")
    # NOTE: the arm's tree first; what was on the path (e.g. carried wheels) stays behind it.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
    }
    cmd = [sys.executable, str(HERE / "bench_tp.py"), *argv, "--arm", arm, "--arm-root", root,
           "--arm-out", str(out)]  # fmt: skip
    print(f"== {arm} ({root})", flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    res = json.loads(out.read_text())
    out.unlink()
    print(
        f"   {arm}: batch-1 {res['batch1_tok_per_s']:.1f} tok/s, offline "
        f"{res['offline_tok_per_s']:.0f} tok/s ({time.perf_counter() - start:.0f}s)",
        flush=True,
    )
    return res


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default=str(HERE / "configs/llama-3-8b.json"))
    p.add_argument("--dtype", default="auto")
    p.add_argument("--baseline-root", default="", help="checkout of the pre-TP code (arm base)")
    p.add_argument("--tp", type=int, default=0, help="also run TP=N (N GPUs)")
    p.add_argument("--arms", default="", help="comma list; default base,tp1,tp1-group[,tpN]")
    p.add_argument("--num-requests", type=int, default=256, help="offline batch")
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=256)
    p.add_argument("--max-running", type=int, default=256)
    p.add_argument("--chunk", type=int, default=8192)
    p.add_argument("--num-slots", type=int, default=None)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    p.add_argument("--arm", help=argparse.SUPPRESS)
    p.add_argument("--arm-root", help=argparse.SUPPRESS)
    p.add_argument("--arm-out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.arm:
        Path(args.arm_out).write_text(json.dumps(run_arm(args.arm, args.arm_root, args)))
        return 0
    default = ["base"] * bool(args.baseline_root) + ["tp1", "tp1-group"]
    arms = [a for a in args.arms.split(",") if a] or default + [f"tp{args.tp}"] * (args.tp > 1)
    results = {
        a: spawn_arm(a, args.baseline_root if a == "base" else str(ROOT), argv) for a in arms
    }
    summary = {"arms": results}
    if "base" in results:
        base = results["base"]
        for a, r in results.items():
            for k in ("batch1_tok_per_s", "offline_tok_per_s"):
                summary.setdefault("ratio_to_base", {}).setdefault(a, {})[k] = r[k] / base[k]
        print(json.dumps(summary["ratio_to_base"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
