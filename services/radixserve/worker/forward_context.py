"""The per-forward context: the one type that holds a step's forward metadata.

Built once per step by :func:`radixserve.worker.batch.build_tensors` (or, for decode CUDA graphs,
over static buffers by :mod:`radixserve.worker.cuda_graph`), passed explicitly down the model to the
attention backend (never stored in module globals). The attention backend adds its own metadata
(``attn_metadata``) once per forward in ``prepare``; every layer then reuses it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from radixserve.common.types import ForwardMode

if TYPE_CHECKING:
    from radixserve.worker.attention.base import AttentionBackend
    from radixserve.worker.kv_pool import KVPool

logger = logging.getLogger(__name__)


@dataclass
class ForwardContext:
    """Batch layout: request ``i`` owns flat tokens ``qo_indptr[i]:qo_indptr[i+1]``.

    Device tensors: ``input_ids [T]`` and ``positions [T]`` (the model's inputs, passed to it
    as arguments), ``out_cache_loc [T]`` (KV slot of each new token), ``req_rows [B]``,
    ``seq_lens [B]`` (tokens in the row after this step), ``prefix_lens [B]`` (before it),
    ``qo_indptr [B+1]``, ``kv_indptr [B+1]`` (cumulative ``seq_lens``), ``logits_indices [S]``
    (flat indices of the tokens whose logits are wanted). CPU copies end in ``_cpu``.
    """

    mode: ForwardMode
    input_ids: torch.Tensor
    positions: torch.Tensor
    out_cache_loc: torch.Tensor
    req_rows: torch.Tensor
    seq_lens: torch.Tensor
    prefix_lens: torch.Tensor
    qo_indptr: torch.Tensor
    kv_indptr: torch.Tensor
    logits_indices: torch.Tensor
    seq_lens_cpu: list[int]
    qo_indptr_cpu: list[int]
    extend_lens_cpu: list[int]
    kv_pool: KVPool
    req_to_token: torch.Tensor
    attn_backend: AttentionBackend
    attn_metadata: Any = None

    @property
    def batch_size(self) -> int:
        return len(self.seq_lens_cpu)

    @property
    def num_tokens(self) -> int:
        return int(self.out_cache_loc.shape[0])

    @property
    def max_seq_len(self) -> int:
        return max(self.seq_lens_cpu)

    @property
    def max_extend_len(self) -> int:
        return max(self.extend_lens_cpu)
