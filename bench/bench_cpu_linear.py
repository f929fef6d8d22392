"""CPU: ``F.linear`` vs radixserve's decode-sized ``linear`` (bmm over row blocks), per shape.

Each weight is one of enough copies to stream ~200 MB from memory per pass (as a forward does;
a single hot weight would sit in cache), so the figure is what a decode step sees. Shapes are the
embedded SmolLM2-135M's (qkv, o, gate/up, down, LM head)::

    python bench/bench_cpu_linear.py --out bench/results/cpu-linear.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services"), str(ROOT / "kernels")]  # the source roots
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from radixserve.worker.layers.linear import linear  # noqa: E402

SHAPES = {"qkv": (960, 576), "o": (576, 576), "gate_up": (3072, 576), "down": (576, 1536),
          "lm_head": (49152, 576)}  # fmt: skip


def per_call_ms(fn, weights, x, passes: int) -> float:
    for w in weights[:2]:
        fn(x, w)
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        for w in weights:
            fn(x, w)
        best = min(best, (time.perf_counter() - start) / len(weights))
    return best * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, nargs="+", default=[1, 2, 8, 32, 64])
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--stream-mb", type=int, default=200)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    rows_out = []
    for name, (n, k) in SHAPES.items():
        copies = max(1, args.stream_mb * 1_000_000 // (n * k * 4))
        weights = [torch.randn(n, k) for _ in range(copies)]
        for m in args.rows:
            x = torch.randn(m, k)
            ref = per_call_ms(F.linear, weights, x, args.passes)
            ours = per_call_ms(linear, weights, x, args.passes)
            rows_out.append({"shape": name, "n": n, "k": k, "rows": m, "f_linear_ms": ref,
                             "linear_ms": ours, "speedup": ref / ours})  # fmt: skip
            print(f"{name:8s} {m:3d} rows: F.linear {ref:7.3f} ms, ours {ours:7.3f} ms "
                  f"({ref / ours:.2f}x)", flush=True)  # fmt: skip
        del weights
    if args.out:
        meta = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                "torch": torch.__version__, "threads": torch.get_num_threads()}  # fmt: skip
        Path(args.out).write_text(json.dumps({"machine": meta, "results": rows_out}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
