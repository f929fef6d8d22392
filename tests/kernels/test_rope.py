from __future__ import annotations

import math

import pytest
import torch

from radixserve_kernels import build_cos_sin_cache, rotary_embedding, rotary_embedding_ref
from tests.kernels.utils import GPU_DTYPES, assert_close, cpu, device, gpu

LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}


def _check_rope(t, hq, hk, d, rot, is_neox, dtype, flat=False, scaling=None) -> None:
    dev = device()
    cache = build_cos_sin_cache(rot, 10_000, 500_000.0, scaling, device=dev)
    positions = torch.randint(0, 10_000, (t,), device=dev)
    qkv = torch.randn(t, (hq + 2 * hk) * d, device=dev, dtype=dtype)
    q = qkv[:, : hq * d]
    k = qkv[:, hq * d : (hq + hk) * d]
    if not flat:
        q, k = q.view(t, hq, d), k.view(t, hk, d)
    q_ref, k_ref = q.clone(), k.clone()
    rotary_embedding(positions, q, k, cache, is_neox, head_dim=d)
    rotary_embedding_ref(positions, q_ref, k_ref, cache, is_neox, head_dim=d)
    assert_close(q, q_ref, dtype)
    assert_close(k, k_ref, dtype)


@cpu
@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize("t,hq,hk,d,rot", [(5, 4, 2, 64, 64), (1, 3, 1, 64, 64), (3, 2, 1, 40, 24)])
def test_rope_cpu(t, hq, hk, d, rot, is_neox) -> None:
    _check_rope(t, hq, hk, d, rot, is_neox, torch.float32)


@cpu
def test_rope_cpu_flat_fp16_llama3() -> None:
    _check_rope(5, 4, 2, 64, 64, True, torch.float16, flat=True, scaling=LLAMA3)


def test_llama3_cache_matches_loop() -> None:
    rot, base = 128, 500_000.0
    cache = build_cos_sin_cache(rot, 16, base, LLAMA3, dtype=torch.float64)
    inv = [1.0 / base ** (i / rot) for i in range(0, rot, 2)]
    lo_w, hi_w = 8192 / 1.0, 8192 / 4.0
    scaled = []
    for f in inv:
        w = 2 * math.pi / f
        if w < hi_w:
            scaled.append(f)
        elif w > lo_w:
            scaled.append(f / 8.0)
        else:
            s = (8192 / w - 1.0) / (4.0 - 1.0)
            scaled.append((1 - s) * f / 8.0 + s * f)
    ref = torch.tensor(scaled, dtype=torch.float64)
    assert torch.allclose(cache[7, : rot // 2], torch.cos(7 * ref))
    assert torch.allclose(cache[7, rot // 2 :], torch.sin(7 * ref))


@gpu
@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize("t", [1, 4097])
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_rope_gpu(t: int, is_neox: bool, dtype: torch.dtype) -> None:
    _check_rope(t, 32, 8, 128, 128, is_neox, dtype, flat=True, scaling=LLAMA3)
