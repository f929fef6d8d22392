"""Benchmark sliding-window attention (Mistral / Gemma 2/3 / Qwen2 sliding layers) on the GPU.

Decode: B=32, Hq 32, Hkv 8, D 128, bf16, window 4096, at contexts 4k, 8k, 16k and 32k: the full
KV (kv_indices of the whole sequence) against the window only (build_kv_indices(..., window=W),
the last min(L, W) slots of each request, same decode kernel). A windowed call should take about
the same time at every context length, and the 4k full call. Also: the per-step index build,
full against windowed, and SDPA flash over a contiguous KV of the same length (the baseline).
Extend: one long prompt (32k new tokens, then 16k cached + 16k new) with sliding_window=4096
against full causal, beside SDPA flash causal (full: SDPA has no sliding window).
D 256 (Gemma 2): the launch configs the launchers pick for head_dim > 128 against the
alternatives, decode and extend (a config that does not fit shared memory shows as ERROR).

Times are medians of triton.testing.do_bench (L2 cleared before each call); decode is also timed
as a CUDA-graph replay (no launch gaps, as a graph-captured decode step). Bytes are the fewest
the call must move (the K/V it attends to, plus q and o); FLOPs count the visible pairs only.

    python bench/bench_swa.py [--out PATH] [--only decode,extend,d256] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "services"), os.path.join(ROOT, "kernels")]  # source roots

from bench._kbench import Row, Runner, measure_ceilings, write_results  # noqa: E402
from radixserve_kernels import (  # noqa: E402
    build_kv_indices,
    build_kv_indptr,
    decode_attention,
    extend_attention,
)

DEV = "cuda"
DT = torch.bfloat16
EL = 2  # bytes per bf16 element
B, HQ, HKV, D = 32, 32, 8, 128
WINDOW = 4096
CONTEXTS = [4096, 8192, 16384, 32768]
GEMMA = {"hq": 16, "hkv": 8, "d": 256}  # Gemma 2 9B attention
# None: the launcher's pick for head_dim > 128 (decode (32, 4, 2), extend (64, 32, 4, 2), chosen
# from this sweep's first H200 run); the others are the earlier defaults and neighbours.
DECODE_D256_CONFIGS = [None, (64, 4, 3), (32, 4, 3), (64, 4, 2), (16, 4, 2)]
EXTEND_D256_CONFIGS = [None, (64, 32, 4, 2), (32, 32, 4, 2), (64, 64, 8, 2), (128, 64, 8, 1)]


def _rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, device=DEV, dtype=DT)


def _block_table(b: int, n: int, block: int = 16) -> torch.Tensor:
    """req_to_token [b, n]: slots 0 .. b*n-1 in shuffled runs of `block` (a fragmented pool)."""
    nb = (b * n + block - 1) // block
    runs = torch.randperm(nb, device=DEV) * block
    idx = (runs[:, None] + torch.arange(block, device=DEV)[None, :]).flatten()
    return idx[idx < b * n].to(torch.int32).view(b, n)


def _kv_bytes(b: int, n: int, hkv: int, d: int) -> int:
    return b * n * hkv * d * EL * 2


def _window_pairs(e: int, p: int, w: int) -> int:
    """Visible (query, key) pairs of e new tokens after p cached ones (w = 0: causal)."""
    pos = torch.arange(p, p + e, dtype=torch.float64)
    seen = pos + 1 if not w else torch.clamp(pos + 1, max=w)
    return int(seen.sum().item())


# --- decode -------------------------------------------------------------------------------------


def bench_decode(r: Runner) -> None:
    for n in CONTEXTS[:2] if r.quick else CONTEXTS:
        _decode_context(r, n)
        torch.cuda.empty_cache()
        _decode_sdpa(r, n, min(n, WINDOW))


def _decode_context(r: Runner, n: int) -> None:
    table = _block_table(B, n)
    k_buf, v_buf = _rand(B * n, HKV, D), _rand(B * n, HKV, D)
    q = _rand(B, HQ, D)
    out = torch.empty_like(q)
    rows = torch.arange(B, device=DEV, dtype=torch.int32)
    lens = torch.full((B,), n, device=DEV, dtype=torch.int32)
    for label, w in (("full", 0), (f"window={WINDOW}", WINDOW)):
        indptr = build_kv_indptr(lens, w)
        indices = torch.empty(B * n, dtype=torch.int32, device=DEV)  # graph-sized
        build_kv_indices(table, rows, lens, indptr, indices, w)
        kept = min(n, w) if w else n
        nbytes = _kv_bytes(B, kept, HKV, D) + 2 * B * HQ * D * EL
        case = f"B={B} L={n} {label}"

        def call(indptr=indptr, indices=indices):
            return decode_attention(q, k_buf, v_buf, indptr, indices, D**-0.5, out=out)

        r.add(Row("decode_swa", case, "triton", None, nbytes), call)
        r.add(Row("decode_swa", case, "triton graph", None, nbytes), graph_fns=[call])
        r.add(
            Row("kv_indices", case, "build_kv_indices", None, 2 * B * kept * 4),
            lambda indptr=indptr, indices=indices, w=w: build_kv_indices(
                table, rows, lens, indptr, indices, w
            ),
        )


def _decode_sdpa(r: Runner, n: int, kept: int) -> None:
    """SDPA flash over contiguous [B, Hkv, kept, D] K/V: the baseline for reading `kept` keys."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    k, v, q = _rand(B, HKV, kept, D), _rand(B, HKV, kept, D), _rand(B, HQ, 1, D)
    case = f"B={B} L={n} window={WINDOW}"
    nbytes = _kv_bytes(B, kept, HKV, D) + 2 * B * HQ * D * EL
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        r.add(
            Row("decode_swa", case, "sdpa flash (contig)", None, nbytes),
            lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
        )


# --- extend -------------------------------------------------------------------------------------


def bench_extend(r: Runner) -> None:
    cases = [(0, 32768), (16384, 16384)] if not r.quick else [(0, 8192)]
    for p, e in cases:
        _extend_case(r, p, e, HQ, HKV, D)
        torch.cuda.empty_cache()


def _extend_inputs(p: int, e: int, hq: int, hkv: int, d: int):
    q, k, v = _rand(e, hq, d), _rand(e, hkv, d), _rand(e, hkv, d)
    o = torch.empty_like(q)
    k_buf, v_buf = _rand(max(p, 1), hkv, d), _rand(max(p, 1), hkv, d)
    qo = torch.tensor([0, e], device=DEV, dtype=torch.int32)
    kvp = torch.tensor([0, p], device=DEV, dtype=torch.int32)
    kvi = _block_table(1, max(p, 1)).flatten()
    return q, k, v, o, k_buf, v_buf, qo, kvp, kvi


def _extend_case(r: Runner, p: int, e: int, hq: int, hkv: int, d: int) -> None:
    args = _extend_inputs(p, e, hq, hkv, d)
    for label, w in (("causal", 0), (f"window={WINDOW}", WINDOW)):
        flops = 4 * hq * d * _window_pairs(e, p, w)
        case = f"prefix={p} new={e} {label}"
        r.add(
            Row("extend_swa", case, "triton", None, flops=flops),
            lambda w=w: extend_attention(*args, d**-0.5, max_extend_len=e, sliding_window=w),
        )
    if p == 0:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        q, k, v = (x.transpose(0, 1).unsqueeze(0).contiguous() for x in args[:3])
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            flops = 4 * hq * d * _window_pairs(e, 0, 0)
            r.add(
                Row("extend_swa", f"prefix=0 new={e} causal", "sdpa flash", None, flops=flops),
                lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
            )


# --- D 256 launch configs -----------------------------------------------------------------------


def bench_d256(r: Runner) -> None:
    """The head_dim > 128 configs (None: what the launcher picks) against alternatives."""
    _decode_d256(r, 8192 if r.quick else 32768)
    torch.cuda.empty_cache()
    _extend_d256(r, 8192)


def _decode_d256(r: Runner, n: int) -> None:
    hq, hkv, d = GEMMA["hq"], GEMMA["hkv"], GEMMA["d"]
    table = _block_table(B, n)
    k_buf, v_buf, q = _rand(B * n, hkv, d), _rand(B * n, hkv, d), _rand(B, hq, d)
    out = torch.empty_like(q)
    lens = torch.full((B,), n, device=DEV, dtype=torch.int32)
    rows = torch.arange(B, device=DEV, dtype=torch.int32)
    indptr, indices = build_kv_indices(table, rows, lens, window=WINDOW)
    nbytes = _kv_bytes(B, min(n, WINDOW), hkv, d) + 2 * B * hq * d * EL
    for cfg in DECODE_D256_CONFIGS:
        r.add(
            Row("decode_d256", f"B={B} L={n} window={WINDOW}", f"graph cfg={cfg}", None, nbytes),
            graph_fns=[
                lambda cfg=cfg: decode_attention(
                    q, k_buf, v_buf, indptr, indices, d**-0.5, 50.0, out=out, config=cfg
                )
            ],
        )


def _extend_d256(r: Runner, e: int) -> None:
    hq, hkv, d = GEMMA["hq"], GEMMA["hkv"], GEMMA["d"]
    args = _extend_inputs(0, e, hq, hkv, d)
    for w in (0, WINDOW):
        flops = 4 * hq * d * _window_pairs(e, 0, w)
        for cfg in EXTEND_D256_CONFIGS:
            r.add(
                Row("extend_d256", f"new={e} window={w}", f"cfg={cfg}", None, flops=flops),
                lambda cfg=cfg, w=w: extend_attention(
                    *args, d**-0.5, logit_cap=50.0, max_extend_len=e, config=cfg, sliding_window=w
                ),
            )


SECTIONS = {"decode": bench_decode, "extend": bench_extend, "d256": bench_d256}


def summary(rows: list[Row]) -> list[str]:
    """Decode: full against windowed graph time at each context, and the windowed time's spread."""
    by = {(row.case, row.impl): row for row in rows if row.kernel == "decode_swa" and row.ms}
    lines = [f"{'L':>6s} {'full us':>9s} {'window us':>10s} {'speedup':>8s} {'window GB/s':>12s}"]
    win_ms = []
    for n in CONTEXTS:
        full = by.get((f"B={B} L={n} full", "triton graph"))
        win = by.get((f"B={B} L={n} window={WINDOW}", "triton graph"))
        if not (full and win):
            continue
        win_ms.append(win.ms)
        lines.append(
            f"{n:6d} {full.ms * 1e3:9.1f} {win.ms * 1e3:10.1f} {full.ms / win.ms:7.2f}x "
            f"{win.gbps:12.0f}"
        )
    if win_ms:
        lines.append(f"windowed time max/min over contexts: {max(win_ms) / min(win_ms):.2f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/swa-<gpu>.json)")
    ap.add_argument(
        "--only", default=",".join(SECTIONS), help="comma list of " + ",".join(SECTIONS)
    )
    ap.add_argument("--quick", action="store_true", help="a few sizes only (smoke run)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_swa.py needs a CUDA GPU (it times kernels on the device); none found.")
    torch.manual_seed(0)
    name = torch.cuda.get_device_name()
    t0 = time.time()
    ceil = measure_ceilings()
    print(f"# {name}: copy {ceil.copy_gbps:.0f} GB/s, bf16 matmul {ceil.matmul_tflops:.0f} TFLOP/s")
    runner = Runner(ceil, args.quick)
    runner.run(SECTIONS, args.only.split(","))
    lines = summary(runner.rows)
    print("# decode, CUDA-graph time per call: full KV against the window only")
    print("\n".join(lines))
    path = write_results("swa", name, ceil, runner, t0, args.out, summary=lines)
    print(f"# wrote {path} in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
