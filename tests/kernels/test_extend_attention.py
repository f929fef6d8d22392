from __future__ import annotations

import pytest
import torch

from radixserve_kernels import extend_attention, extend_attention_ref
from radixserve_kernels.kv_indices import build_kv_indptr
from tests.kernels.utils import ATTN_REL_TOL, GPU_DTYPES, assert_close, cpu, device, gpu, poison


def dense_attention(q, q_pos, k, v, k_pos, sm_scale, logit_cap=0.0, window=0) -> torch.Tensor:
    """Attention from explicit absolute positions, one head at a time, in float64.

    q [M, Hq, D] at positions q_pos [M]; k, v [N, Hkv, D] at positions k_pos [N]. Query head h
    reads KV head h // (Hq / Hkv). A key is seen when k_pos <= q_pos and, with window W > 0,
    q_pos - k_pos < W (transformers' sliding_window_causal_mask_function; checked against it
    below). Scores are sm_scale * q.k, then cap * tanh(s / cap) when logit_cap > 0 (Gemma 2).
    """
    q, k, v = q.double(), k.double(), v.double()
    seen = k_pos[None, :] <= q_pos[:, None]
    if window:
        seen &= q_pos[:, None] - k_pos[None, :] < window
    group = q.shape[1] // k.shape[1]
    out = torch.zeros(q.shape, dtype=torch.float64, device=q.device)
    for h in range(q.shape[1]):
        s = (q[:, h] @ k[:, h // group].T) * sm_scale
        if logit_cap > 0:
            s = logit_cap * torch.tanh(s / logit_cap)
        s = s.masked_fill(~seen, float("-inf"))
        out[:, h] = torch.softmax(s, dim=-1) @ v[:, h // group]
    return out


class _Case:
    """Random ragged extend inputs: request b has prefix[b] cached and extend[b] new tokens."""

    def __init__(self, prefix, extend, hq, hkv, d, dtype, seed=0) -> None:
        dev = device()
        gen = torch.Generator(device="cpu").manual_seed(seed)

        def randn(*shape):
            return torch.randn(*shape, generator=gen).to(dev, dtype)

        self.prefix, self.extend, self.d = list(prefix), list(extend), d
        t = sum(extend)
        self.num_slots = sum(prefix) + 11
        self.qo_indptr = build_kv_indptr(torch.tensor(extend, device=dev))
        self.kv_indptr = build_kv_indptr(torch.tensor(prefix, device=dev))
        perm = torch.randperm(self.num_slots, generator=gen)[: max(sum(prefix), 1)]
        self.kv_indices = perm.to(dev, torch.int32)
        self.q, self.k, self.v = randn(t, hq, d), randn(t, hkv, d), randn(t, hkv, d)
        self.k_buf = randn(self.num_slots, hkv, d)
        self.v_buf = randn(self.num_slots, hkv, d)

    def args(self, kv_indptr=None, kv_indices=None, k_buf=None, v_buf=None):
        return (
            self.q, self.k, self.v, torch.empty_like(self.q),
            self.k_buf if k_buf is None else k_buf, self.v_buf if v_buf is None else v_buf,
            self.qo_indptr,
            self.kv_indptr if kv_indptr is None else kv_indptr,
            self.kv_indices if kv_indices is None else kv_indices,
        )  # fmt: skip

    def run(self, scale, kernel=True, kv_indptr=None, kv_indices=None, k_buf=None, v_buf=None,
            **kw) -> torch.Tensor:  # fmt: skip
        """The kernel (output poisoned first) or, with kernel=False, the ref; kw go to both."""
        args = list(self.args(kv_indptr, kv_indices, k_buf, v_buf))
        if not kernel:
            return extend_attention_ref(*args, scale, **kw)
        args[3] = poison(args[3])
        return extend_attention(*args, scale, **kw)

    def dense(self, scale, cap=0.0, window=0) -> torch.Tensor:
        """dense_attention per request, from each token's absolute position."""
        outs = []
        for b, (p, e) in enumerate(zip(self.prefix, self.extend, strict=True)):
            q0, q1 = int(self.qo_indptr[b]), int(self.qo_indptr[b + 1])
            idx = self.kv_indices[int(self.kv_indptr[b]) : int(self.kv_indptr[b + 1])].long()
            keys = torch.cat([self.k_buf[idx], self.k[q0:q1]])
            vals = torch.cat([self.v_buf[idx], self.v[q0:q1]])
            pos = torch.arange(p + e, device=keys.device)
            outs.append(
                dense_attention(self.q[q0:q1], pos[p:], keys, vals, pos, scale, cap, window)
            )
        return torch.cat(outs)


def _check_extend(prefix, extend, hq, hkv, d, dtype, config=None, masked=False, cap=0.0) -> None:
    dev = device()
    t = sum(extend)
    num_slots = sum(prefix) + 11
    qo_indptr = build_kv_indptr(torch.tensor(extend, device=dev))
    kv_indptr = build_kv_indptr(torch.tensor(prefix, device=dev))
    kv_indices = torch.randperm(num_slots, device=dev)[: max(sum(prefix), 1)].to(torch.int32)
    q = torch.randn(t, hq, d, device=dev, dtype=dtype)
    k = torch.randn(t, hkv, d, device=dev, dtype=dtype)
    v = torch.randn(t, hkv, d, device=dev, dtype=dtype)
    k_buf = torch.randn(num_slots, hkv, d, device=dev, dtype=dtype)
    v_buf = torch.randn(num_slots, hkv, d, device=dev, dtype=dtype)
    mask = None
    if masked:
        n = sum(e * (p + e) for p, e in zip(prefix, extend, strict=True))
        mask = torch.rand(n, device=dev) < 0.6
    scale = d**-0.5
    args = (q, k, v, None, k_buf, v_buf, qo_indptr, kv_indptr, kv_indices, scale, mask)
    o = poison(torch.empty_like(q))
    extend_attention(*args[:3], o, *args[4:], logit_cap=cap, config=config)
    ref = extend_attention_ref(*args[:3], torch.empty_like(q), *args[4:], logit_cap=cap)
    assert_close(o, ref, dtype, rel=ATTN_REL_TOL)


def _check_window(prefix, extend, hq, hkv, d, dtype, window, cap=0.0, scale=None, config=None):
    case = _Case(prefix, extend, hq, hkv, d, dtype)
    scale = scale or d**-0.5
    kw = {"logit_cap": cap, "sliding_window": window}
    out = case.run(scale, config=config, **kw)
    ref = case.run(scale, kernel=False, **kw)
    assert_close(out, ref, dtype, rel=ATTN_REL_TOL)
    return case, out, ref


@cpu
@pytest.mark.parametrize("config", [None, (32, 16, 4, 1)])
def test_extend_cpu_ragged_prefix(config) -> None:
    _check_extend([0, 17, 5], [5, 1, 37], 4, 2, 64, torch.float32, config=config)


@cpu
def test_extend_cpu_custom_mask_odd_dim() -> None:
    _check_extend([3, 0], [6, 9], 2, 1, 40, torch.float32, masked=True)


@cpu
def test_extend_cpu_fp16_cap_decode_token() -> None:
    _check_extend([20], [1], 4, 4, 64, torch.float16, cap=4.0)


# Prefix/extend lengths 30/9, 0/37 and 6/1 (a decode token) against windows below the prefix (5),
# between prefix and total (33), at least the total (64); 1 sees only the token itself; 16 equals
# the interpreter's tile, so tiles both straddle and fall wholly outside the window.
@cpu
@pytest.mark.parametrize("window", [1, 5, 16, 33, 64])
def test_extend_cpu_sliding_window(window) -> None:
    _check_window([30, 0, 6], [9, 37, 1], 4, 2, 64, torch.float32, window)


@cpu
@pytest.mark.parametrize("config", [(32, 16, 4, 1), (16, 16, 4, 1)])
def test_extend_cpu_window_gemma_d256_cap_scale(config) -> None:
    """Gemma 2-like: D 256, soft-cap 50, scale query_pre_attn_scalar ** -0.5 with 224."""
    _check_window([21, 3], [19, 2], 4, 2, 256, torch.float32, 9, cap=50.0, scale=224**-0.5,
                  config=config)  # fmt: skip


@cpu
def test_extend_cpu_window_odd_dim_fp16_cap() -> None:
    """D 80 (BLOCK_D 128, masked), MHA, fp16, a cap small enough to bite and a custom scale."""
    _check_window([12, 40], [20, 5], 2, 2, 80, torch.float16, 17, cap=2.0, scale=0.2)


@cpu
def test_extend_cpu_full_d256_and_d80_custom_scale() -> None:
    """Without a window: head dims 256 and 80 and a non-default scale, with and without a cap."""
    _check_window([7], [18], 2, 1, 256, torch.float32, 0, scale=0.05)
    _check_window([0, 9], [17, 3], 4, 2, 80, torch.float32, 0, cap=5.0, scale=0.3)


@cpu
def test_extend_cpu_window_prefix_may_be_truncated() -> None:
    """The window is relative to the passed prefix's end: passing only each request's last
    min(P, W) prefix slots gives the same output as passing the whole prefix."""
    w = 7
    case, full, _ = _check_window([30, 4, 0], [5, 9, 3], 4, 2, 64, torch.float32, w)
    lens = torch.tensor(case.prefix).clamp(max=w)
    keep = [
        case.kv_indices[int(case.kv_indptr[b + 1]) - int(n) : int(case.kv_indptr[b + 1])]
        for b, n in enumerate(lens)
    ]
    indptr = build_kv_indptr(lens.to(case.kv_indptr.device))
    out = case.run(64**-0.5, sliding_window=w, kv_indptr=indptr, kv_indices=torch.cat(keep))
    assert_close(out, full, torch.float32, rel=ATTN_REL_TOL)


@cpu
def test_extend_cpu_window_skips_prefix_outside() -> None:
    """Prefix slots older than every token's window are never read: NaN there changes nothing."""
    w = 6
    case, clean, _ = _check_window([40, 3], [4, 20], 2, 1, 64, torch.float32, w)
    k_buf, v_buf = case.k_buf.clone(), case.v_buf.clone()
    for b, p in enumerate(case.prefix):
        start = int(case.kv_indptr[b])
        stale = case.kv_indices[start : start + max(p - w + 1, 0)].long()
        k_buf[stale], v_buf[stale] = float("nan"), float("nan")
    out = case.run(64**-0.5, sliding_window=w, k_buf=k_buf, v_buf=v_buf)
    assert torch.equal(out, clean)


@cpu
def test_extend_cpu_window_rejects_custom_mask_and_bad_values() -> None:
    case = _Case([2], [3], 2, 1, 16, torch.float32)
    mask = torch.ones(3 * 5, dtype=torch.bool, device=device())
    for fn in (extend_attention, extend_attention_ref):
        with pytest.raises(ValueError, match="custom_mask"):
            fn(*case.args(), 0.25, mask, sliding_window=4)
        with pytest.raises(ValueError, match="sliding_window"):
            fn(*case.args(), 0.25, sliding_window=-1)


@cpu
@pytest.mark.parametrize(
    ("prefix", "extend", "window", "cap", "scale"),
    [
        ([0, 5, 12], [7, 1, 4], 0, 0.0, None),
        ([0, 5, 12], [7, 1, 4], 3, 0.0, None),
        ([9, 0], [6, 11], 10, 4.0, 0.3),
        ([3], [5], 50, 1.5, 0.7),
    ],
)
def test_extend_ref_matches_dense_positions(prefix, extend, window, cap, scale) -> None:
    """The ref itself, against attention built from explicit absolute positions (fp64)."""
    case = _Case(prefix, extend, 4, 2, 16, torch.float32)
    scale = scale or 16**-0.5
    ref = case.run(scale, kernel=False, logit_cap=cap, sliding_window=window)
    assert_close(ref, case.dense(scale, cap, window).float(), torch.float32)


@cpu
@pytest.mark.parametrize(("window", "cap"), [(4, 0.0), (4, 2.0), (0, 2.0)])
def test_dense_reference_matches_transformers(window, cap) -> None:
    """dense_attention's mask and soft-cap are transformers' (masking_utils + Gemma 2 eager)."""
    from types import SimpleNamespace

    pytest.importorskip("transformers")
    masking = pytest.importorskip("transformers.masking_utils")
    gemma2 = pytest.importorskip("transformers.models.gemma2.modeling_gemma2")
    n, hq, hkv, d, scale = 11, 4, 2, 16, 0.3
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(n, h, d, generator=gen, dtype=torch.float64) for h in (hq, hkv, hkv))
    pos = torch.arange(n)
    if window:
        fn = masking.sliding_window_causal_mask_function(window)
    else:
        fn = masking.causal_mask_function
    seen = fn(0, 0, pos[:, None], pos[None, :])
    add = torch.zeros(n, n, dtype=torch.float64).masked_fill(~seen, torch.finfo(torch.float64).min)
    module = SimpleNamespace(num_key_value_groups=hq // hkv, training=False, head_dim=d)
    hf, _ = gemma2.eager_attention_forward(
        module, q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
        add[None, None], scaling=scale, softcap=cap or None,
    )  # fmt: skip
    ours = dense_attention(q, pos, k, v, pos, scale, cap, window)
    # NOTE: transformers' eager softmax runs in fp32 whatever the input dtype.
    torch.testing.assert_close(ours, hf[0], rtol=1e-5, atol=1e-6)
    # The rule in words: the last `window` positions including the query itself.
    if window:
        assert seen.sum(1).tolist() == [min(i + 1, window) for i in range(n)]


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_extend_gpu_llama3_8b(dtype) -> None:
    _check_extend([0, 300, 1000, 7], [1000, 77, 513, 1], 32, 8, 128, dtype)


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_extend_gpu_masked_and_cap(dtype) -> None:
    _check_extend([100, 0], [129, 64], 32, 8, 128, dtype, masked=True, cap=30.0)


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("window", [64, 700, 4096])
def test_extend_gpu_sliding_window_mistral(dtype, window) -> None:
    """Mistral-like (Hq 32, Hkv 8, D 128): windows inside the prefix, between, beyond."""
    _check_window([0, 1500, 300, 9], [2000, 77, 513, 1], 32, 8, 128, dtype, window)


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("window", [0, 100, 4096])
def test_extend_gpu_gemma2_d256(dtype, window) -> None:
    """Gemma 2 9B: Hq 16, Hkv 8, D 256, soft-cap 50, scale 256 ** -0.5; checks the D > 128
    launch config compiles and fits shared memory."""
    _check_window([0, 700, 40], [1100, 300, 1], 16, 8, 256, dtype, window, cap=50.0)


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_extend_gpu_odd_dim_window(dtype) -> None:
    _check_window([200, 0], [300, 129], 8, 2, 80, dtype, 128, cap=20.0, scale=0.1)


@gpu
@pytest.mark.parametrize("config", [(64, 64, 4, 3), (128, 64, 8, 3), (64, 32, 4, 2)])
def test_extend_gpu_window_configs(config) -> None:
    """Window edges against every tile shape the launcher picks (BLOCK_M = 2 BLOCK_N too)."""
    _check_window([333, 0], [900, 700], 32, 8, 128, torch.bfloat16, 200, config=config)
