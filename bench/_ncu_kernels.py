"""Run each kernel once at its benchmark shape inside cudaProfilerStart/Stop, for Nsight Compute.

    ncu --profile-from-start off --clock-control none --section SpeedOfLight ... \
        python bench/_ncu_kernels.py
"""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "services"), os.path.join(ROOT, "kernels")]  # source roots

from bench.bench_kernels import FFN, HIDDEN, HKV, HQ, SCALE, D, _decode_sets, _rand  # noqa: E402
from radixserve_kernels import (  # noqa: E402
    build_cos_sin_cache,
    decode_attention,
    extend_attention,
    fused_add_rms_norm,
    rms_norm,
    rotary_embedding,
    silu_and_mul,
)


def _work() -> list:
    t = 32768
    x, w, res = _rand(t, HIDDEN), _rand(HIDDEN), _rand(t, HIDDEN)
    g = _rand(8192, 2 * FFN)
    cache = build_cos_sin_cache(D, 131072, 500000.0, None, device="cuda")
    pos = torch.randint(0, 131072, (16384,), device="cuda")
    qkv = _rand(16384, (HQ + 2 * HKV) * D)
    q, k = qkv[:, : HQ * D], qkv[:, HQ * D : (HQ + HKV) * D]
    d64 = _decode_sets(64, 2048, 1)
    d1 = _decode_sets(1, 4096, 1)
    n = 8192
    qe, ke, ve = _rand(n, HQ, D), _rand(n, HKV, D), _rand(n, HKV, D)
    oe = torch.empty_like(qe)
    qo = torch.tensor([0, n], device="cuda", dtype=torch.int32)
    kvp = torch.zeros(2, device="cuda", dtype=torch.int32)
    qt, kt, vt = (a.transpose(0, 1).unsqueeze(0).contiguous() for a in (qe, ke, ve))
    return [
        lambda: rms_norm(x, w, 1e-5),
        lambda: fused_add_rms_norm(x, res, w, 1e-5),
        lambda: silu_and_mul(g),
        lambda: rotary_embedding(pos, q, k, cache, True, head_dim=D),
        lambda: decode_attention(d64[4][0], d64[0], d64[1], d64[2], d64[3][0], SCALE),
        lambda: decode_attention(d1[4][0], d1[0], d1[1], d1[2], d1[3][0], SCALE),
        lambda: extend_attention(qe, ke, ve, oe, ke, ve, qo, kvp, qo, SCALE, max_extend_len=n),
        lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=True),
    ]


def main() -> None:
    work = _work()
    for fn in work:  # compile and warm up outside the profiled range
        fn()
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    for fn in work:
        fn()
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()


if __name__ == "__main__":
    main()
