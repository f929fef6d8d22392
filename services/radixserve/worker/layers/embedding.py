"""Token embedding and LM head (tied or untied), vocabulary-parallel.

With a group of ``tp`` ranks each rank holds ``ceil(vocab / tp)`` rows of the table (the last
rank's tail is zero padding). The embedding looks up the ids in its range (zeros elsewhere) and
the ranks' partial embeddings are summed (an all-reduce); the head computes its slice of the
logits, which are gathered on rank 0 (the padding columns cut off). At size 1 both hold the whole
vocabulary and call nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from radixserve.worker.layers.linear import linear
from radixserve.worker.parallel.shapes import vocab_shard

if TYPE_CHECKING:
    from radixserve.worker.parallel.group import TPGroup

logger = logging.getLogger(__name__)


class VocabEmbedding(nn.Module):
    def __init__(
        self, vocab_size: int, hidden_size: int, tp_rank: int = 0, tp_size: int = 1,
        group: TPGroup | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        if group is not None:
            tp_rank, tp_size = group.rank, group.size
        self.tp_rank, self.tp_size = tp_rank, tp_size
        self.group = group if group is not None and group.size > 1 else None
        self.vocab_size = vocab_size
        self.start, rows = vocab_shard(vocab_size, tp_rank, tp_size)
        self.end = self.start + rows
        self.weight = nn.Parameter(torch.empty(rows, hidden_size), requires_grad=False)
        self.weight.weight_loader = self.weight_loader
        self.weight.full_loader = self.weight_loader
        self.weight.full_shape = (vocab_size, hidden_size)

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
        if loaded.shape != param.full_shape:
            raise ValueError(f"embedding shape {tuple(loaded.shape)} != {param.full_shape}")
        part = loaded[self.start : self.end]
        param.data[: len(part)].copy_(part)
        param.data[len(part) :].zero_()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.group is None:
            return F.embedding(input_ids, self.weight)
        # NOTE: no branch on host values (CUDA graphs): out-of-range ids read row 0, then zeroed.
        mine = (input_ids >= self.start) & (input_ids < self.end)
        local = torch.where(mine, input_ids - self.start, 0)
        x = F.embedding(local, self.weight) * mine.unsqueeze(-1).to(self.weight.dtype)
        return self.group.all_reduce(x)


class LMHead(VocabEmbedding):
    """Projects hidden states to vocabulary logits; ``tie(embedding)`` shares the weight.

    With TP the full logits exist on rank 0 only; the other ranks get None on gloo (and the
    gathered logits, which they ignore, on NCCL).
    """

    def tie(self, embedding: VocabEmbedding) -> None:
        self.weight = embedding.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor | None:
        logits = linear(hidden, self.weight)
        if self.group is None:
            return logits
        full = self.group.gather_to_leader(logits, dim=-1)
        return None if full is None else full[..., : self.vocab_size]
