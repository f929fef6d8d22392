"""Triton kernels for the hot ops of a Llama-style forward, one op per module.

Each module holds the @triton.jit kernel(s), a launcher that checks its arguments and computes the
grid, and a pure-torch `<op>_ref` with the same signature. Public launchers (all tensors on one
device; fp16/bf16/fp32 data, int32/int64 indices):

    rms_norm(x, weight, eps=1e-6, out=None) -> out
    fused_add_rms_norm(x, residual, weight, eps=1e-6, out=None) -> out   # residual += x in place
    rotary_embedding(positions, q, k, cos_sin_cache, is_neox=True, head_dim=None) -> None
        # in place; q [T, Hq, D] or [T, Hq*D] (then pass head_dim), k likewise
    build_cos_sin_cache(rotary_dim, max_position, base, rope_scaling=None, dtype, device)
        # [max_position, rotary_dim]: cos | sin; rope_scaling: HF's dict (linear, llama3)
    rope_inv_freq(rotary_dim, base, rope_scaling=None) -> [rotary_dim / 2] float64
    silu_and_mul(x, out=None) -> out                                    # [T, 2I] -> [T, I]
    store_kv(k_buffer, v_buffer, slots, k, v) -> None                   # pool[slots] = k, v
    build_kv_indices(req_to_token, req_rows, seq_lens, kv_indptr=None, kv_indices=None,
                     window=None) -> (kv_indptr [B+1] int32, kv_indices int32)
        # window W > 0: each request's last min(L_b, W) slots only (sliding-window decode)
    build_kv_indptr(seq_lens, window=None) -> [0, cumsum(min(seq_lens, W))] int32, no host sync
    decode_attention(q, k_buffer, v_buffer, kv_indptr, kv_indices, sm_scale, logit_cap=0.0,
                     num_kv_splits=None, out=None) -> out [B, Hq, D]
    extend_attention(q, k, v, o, k_buffer, v_buffer, qo_indptr, kv_indptr, kv_indices, sm_scale,
                     custom_mask=None, mask_indptr=None, logit_cap=0.0, max_extend_len=None,
                     config=None, sliding_window=0) -> o

Sliding window W (Mistral, Gemma 2/3, Qwen2 sliding layers), as transformers' masking_utils: the
query at position p sees keys k with p - W < k <= p. Decode gets it from windowed kv indices
(build_kv_indices(..., window=W)), extend from sliding_window=W. logit_cap is Gemma 2's
soft-capping, cap * tanh(sm_scale * q.k / cap); head_dim may be any size up to 256.

For CUDA-graph capture, pass every size argument that would otherwise need a host sync:
`kv_indices` to build_kv_indices, `num_kv_splits` to decode_attention (the default depends only
on B and Hkv, so it is stable too), `max_extend_len` to extend_attention.
"""

from __future__ import annotations

from radixserve_kernels.decode_attention import decode_attention, decode_attention_ref
from radixserve_kernels.extend_attention import extend_attention, extend_attention_ref
from radixserve_kernels.fused_add_rms_norm import fused_add_rms_norm, fused_add_rms_norm_ref
from radixserve_kernels.kv_indices import build_kv_indices, build_kv_indices_ref, build_kv_indptr
from radixserve_kernels.rms_norm import rms_norm, rms_norm_ref
from radixserve_kernels.rotary_embedding import (
    build_cos_sin_cache,
    rope_inv_freq,
    rotary_embedding,
    rotary_embedding_ref,
)
from radixserve_kernels.silu_and_mul import silu_and_mul, silu_and_mul_ref
from radixserve_kernels.store_kv import store_kv, store_kv_ref

__all__ = [
    "build_cos_sin_cache",
    "build_kv_indices",
    "build_kv_indices_ref",
    "build_kv_indptr",
    "decode_attention",
    "decode_attention_ref",
    "extend_attention",
    "extend_attention_ref",
    "fused_add_rms_norm",
    "fused_add_rms_norm_ref",
    "rms_norm",
    "rms_norm_ref",
    "rope_inv_freq",
    "rotary_embedding",
    "rotary_embedding_ref",
    "silu_and_mul",
    "silu_and_mul_ref",
    "store_kv",
    "store_kv_ref",
]
