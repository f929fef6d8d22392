"""Token embedding and LM head (tied or untied).

Tensor parallelism would split the vocabulary across ranks: each rank embeds the ids in its range
(zeros elsewhere, then an all-reduce) and the head computes its slice of the logits (then a
gather). Today ``tp_size = 1`` and both hold the whole vocabulary.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


class VocabEmbedding(nn.Module):
    def __init__(self, vocab_size: int, hidden_size: int, tp_rank: int = 0, tp_size: int = 1):
        super().__init__()
        if tp_size != 1:
            raise NotImplementedError("vocab-parallel embedding is not implemented yet")
        self.vocab_size = vocab_size
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size), requires_grad=False)
        self.weight.weight_loader = self.weight_loader

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
        if param.shape != loaded.shape:
            raise ValueError(f"embedding shape {tuple(loaded.shape)} != {tuple(param.shape)}")
        param.data.copy_(loaded)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.weight)


class LMHead(VocabEmbedding):
    """Projects hidden states to vocabulary logits; ``tie(embedding)`` shares the weight."""

    def tie(self, embedding: VocabEmbedding) -> None:
        self.weight = embedding.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight)
